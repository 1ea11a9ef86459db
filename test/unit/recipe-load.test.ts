/**
 * loadRecipe: reading the file, resolving paths against the recipe's folder, checking and hashing
 * every referenced file, and the example recipes the product ships.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtemp, mkdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { isKilnError, type KilnError } from "../../src/errors.js";
import { loadRecipe } from "../../src/recipe/load.js";

// Tests run from dist/test/unit; fixtures and examples stay in the source tree.
const REPO = fileURLToPath(new URL("../../../", import.meta.url));
const FIXTURES = path.join(REPO, "test/fixtures/recipes");

async function sha256(file: string): Promise<string> {
  return createHash("sha256").update(await readFile(file)).digest("hex");
}

async function rejection(file: string): Promise<KilnError> {
  try {
    await loadRecipe(file);
  } catch (e) {
    if (isKilnError(e)) return e;
    throw e;
  }
  assert.fail(`expected ${file} to be rejected`);
}

void test("a recipe's referenced files come back absolute, each with its digest", async () => {
  const dir = path.join(FIXTURES, "full");
  const file = path.join(dir, "recipe.yaml");
  const loaded = await loadRecipe(file);
  assert.equal(loaded.file, file);
  assert.equal(loaded.dir, dir);
  assert.equal(loaded.sha256, await sha256(file));

  const r = loaded.recipe;
  const abs = (p: string) => path.join(dir, p);
  assert.equal(r.repositories[0]?.key, abs("keys/backports.asc"));
  assert.deepEqual(r.files.map((f) => f.source), [abs("motd.txt"), abs("motd.txt")]);
  assert.deepEqual(r.caCertificates, [abs("site-ca.pem")]);
  assert.equal(r.scripts[0]?.source, abs("tune.sh"));

  // motd.txt is referenced twice and listed once.
  const expected: Record<string, string> = {};
  for (const p of ["keys/backports.asc", "motd.txt", "site-ca.pem", "tune.sh"]) expected[abs(p)] = `sha256:${await sha256(abs(p))}`;
  assert.deepEqual(loaded.inputs, expected);
});

void test("an imported image is an input like any other file", async () => {
  const dir = path.join(FIXTURES, "import");
  const loaded = await loadRecipe(path.join(dir, "recipe.yaml"));
  assert.deepEqual(loaded.recipe.base, { image: path.join(dir, "tiny.squashfs"), format: "squashfs" });
  assert.deepEqual(Object.keys(loaded.inputs), [path.join(dir, "tiny.squashfs")]);
});

void test("missing or unusable referenced files are all reported, each at its field", async () => {
  const dir = path.join(FIXTURES, "missing");
  const e = await rejection(path.join(dir, "recipe.yaml"));
  assert.equal(e.code, "RECIPE_INVALID");
  assert.deepEqual(e.problems, [
    { path: "repositories[0].key", message: `./vendor.asc does not exist (looked in ${dir}/vendor.asc); relative paths start at the recipe's folder` },
    { path: "files[2].source", message: `./motd.txt does not exist (looked in ${dir}/motd.txt); relative paths start at the recipe's folder` },
    { path: "caCertificates[0]", message: `./certs is not a regular file (looked in ${dir}/certs); give the path of a file` },
    { path: "scripts[0].source", message: `./nowhere/tune.sh does not exist (looked in ${dir}/nowhere/tune.sh); relative paths start at the recipe's folder` },
  ]);
  const label = path.join(dir, "recipe.yaml");
  assert.ok(e.message.startsWith(`${label}: repositories[0].key: ./vendor.asc does not exist`), e.message);
});

void test("an unreadable recipe file is named, without a stack", async () => {
  const missing = await rejection("no-such-dir/recipe.yaml");
  assert.equal(missing.message, `no-such-dir/recipe.yaml: cannot read ${path.resolve("no-such-dir/recipe.yaml")} (no such file); check the path`);
  const folder = await rejection(FIXTURES);
  assert.match(folder.message, /cannot read .* \(it is a directory\)/);
  assert.doesNotMatch(folder.message, /\n\s+at /);
});

void test("messages start with the file as the user named it", async () => {
  const dir = await mkdtemp(path.join(tmpdir(), "kiln-recipe-"));
  try {
    const file = path.join(dir, "recipe.yaml");
    await writeFile(file, "apiVersion: kiln/v1\nname: x\nbase: {debian: bookworm}\nkernal: []\n");
    const e = await rejection(path.relative(process.cwd(), file));
    assert.equal(e.message.split(": ")[0], path.relative(process.cwd(), file));
    assert.deepEqual(e.problems.map((p) => p.path), ["kernal", "kernels"]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

void test("a symlinked source inside the folder is followed, hashed by its target's bytes, and built from the target", async () => {
  const dir = await mkdtemp(path.join(tmpdir(), "kiln-recipe-"));
  try {
    await mkdir(path.join(dir, "shared"));
    await writeFile(path.join(dir, "shared/motd"), "hello\n");
    await symlink("shared/motd", path.join(dir, "motd"));
    await writeFile(
      path.join(dir, "recipe.yaml"),
      "apiVersion: kiln/v1\nname: x\nbase: {debian: bookworm}\noutputs: [squashfs]\nfiles: [{path: /etc/motd, source: motd}]\n",
    );
    const loaded = await loadRecipe(path.join(dir, "recipe.yaml"));
    // The stages open the real path the loader checked, not a link that could be swapped later.
    assert.deepEqual(loaded.inputs, { [path.join(dir, "shared/motd")]: `sha256:${createHash("sha256").update("hello\n").digest("hex")}` });
    assert.equal(loaded.recipe.files[0]?.source, path.join(dir, "shared/motd"));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

void test("examples/minimal.yaml: bookworm minbase, one generic kernel, boot-verified", async () => {
  const { recipe: r } = await loadRecipe(path.join(REPO, "examples/minimal.yaml"));
  assert.deepEqual(r.base, { debian: "bookworm", variant: "minbase", components: ["main"] });
  assert.deepEqual(r.packages, ["systemd", "systemd-sysv", "udev"]);
  assert.deepEqual(r.kernels, [{ flavor: "generic", package: "linux-image-amd64" }]);
  assert.equal(r.verify, "boot");
});

void test("examples/server.yaml: server packages, motd, ssh enabled, three flavors", async () => {
  const { recipe: r } = await loadRecipe(path.join(REPO, "examples/server.yaml"));
  assert.equal(r.packages.length, 15);
  assert.ok(["openssh-server", "cloud-init", "isc-dhcp-client", "kmod"].every((p) => r.packages.includes(p)));
  assert.equal(r.files[0]?.path, "/etc/motd");
  assert.equal(r.scripts[0]?.run, "systemctl enable ssh");
  assert.deepEqual(r.kernels.map((k) => `${k.flavor}=${k.package}`), ["generic=linux-image-amd64", "cloud=linux-image-cloud-amd64", "rt=linux-image-rt-amd64"]);
  assert.deepEqual(r.outputs, ["squashfs", "kernel", "initrd", "manifest"]);
  assert.equal(r.verify, "boot");
});

void test("examples/upgrade.yaml: tmux upgraded from bookworm-backports", async () => {
  const { recipe: r } = await loadRecipe(path.join(REPO, "examples/upgrade.yaml"));
  assert.deepEqual(r.repositories, [{ name: "backports", suite: "bookworm-backports", components: ["main"], pin: 100 }]);
  assert.ok(r.packages.includes("tmux"), "installed from bookworm first, then upgraded");
  assert.deepEqual(r.upgrade, ["tmux"]);
  assert.deepEqual(r.kernels.map((k) => k.flavor), ["generic"]);
});
