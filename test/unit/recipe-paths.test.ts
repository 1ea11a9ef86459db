/**
 * Recipes must not read the build host's files: every path a recipe names resolves inside the
 * recipe's own folder, links included, and a path that leaves it gets one message whatever is out
 * there (no "does not exist" / "not a regular file" oracle). The attacks of issue 10 item 1a,
 * through the loader (`kiln build`, `kiln recipe check` and the service's jobs all load with it)
 * and one real CLI run; the API upload has its own test in api-recipe-archive.test.ts.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, mkdir, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { isKilnError, type KilnError } from "../../src/errors.js";
import { loadRecipe } from "../../src/recipe/load.js";
import { runKiln } from "../helpers/kiln.js";

const HEAD = "apiVersion: kiln/v1\nname: x\nbase: {debian: bookworm}\noutputs: [squashfs]\n";
const FIX = "put the file in the recipe's folder and name it relative to it";

let top: string;
/** The recipe's folder. */
let dir: string;
/** A stand-in for the service's data dir beside it: tokens.json and the store's signing key. */
let data: string;

before(async () => {
  top = await mkdtemp(path.join(tmpdir(), "kiln-paths-"));
  dir = path.join(top, "recipes", "evil");
  data = path.join(top, "data");
  await mkdir(dir, { recursive: true });
  await mkdir(path.join(data, "keys"), { recursive: true });
  await writeFile(path.join(data, "tokens.json"), '{"version":1,"tokens":[]}\n');
  await writeFile(path.join(data, "keys", "signing.key"), "-----BEGIN PGP PRIVATE KEY BLOCK-----\n");
  await writeFile(path.join(dir, "motd"), "hello\n");
});
after(async () => {
  await rm(top, { recursive: true, force: true });
});

async function refusal(recipe: string, setup?: () => Promise<void>): Promise<KilnError> {
  await rm(path.join(dir, "recipe.yaml"), { force: true });
  await setup?.();
  await writeFile(path.join(dir, "recipe.yaml"), HEAD + recipe);
  try {
    await loadRecipe(path.join(dir, "recipe.yaml"));
  } catch (e) {
    if (isKilnError(e)) return e;
    throw e;
  }
  assert.fail(`expected the recipe to be refused:\n${recipe}`);
}

const outside = (written: string) => `${JSON.stringify(written)} is outside the recipe's folder; ${FIX}`;

void test("every file field naming a host path is refused at its field, with the fix", async () => {
  const attacks: Array<[string, string, string]> = [
    ["files[0].source", "files: [{path: /etc/x, source: /etc/shadow}]\n", "/etc/shadow"],
    ["files[0].source", "files: [{path: /etc/x, source: ../../etc/hostname}]\n", "../../etc/hostname"],
    ["files[0].source", `files: [{path: /etc/x, source: ${path.join(data, "tokens.json")}}]\n`, path.join(data, "tokens.json")],
    ["files[0].source", "files: [{path: /etc/x, source: ../../data/tokens.json}]\n", "../../data/tokens.json"],
    ["files[0].source", `files: [{path: /etc/x, source: ${path.join(data, "keys/signing.key")}}]\n`, path.join(data, "keys/signing.key")],
    ["files[0].source", "files: [{path: /etc/x, source: ./sub/../../../data/keys/signing.key}]\n", "./sub/../../../data/keys/signing.key"],
    ["caCertificates[0]", "caCertificates: [/etc/ssl/private/ssl-cert-snakeoil.key]\n", "/etc/ssl/private/ssl-cert-snakeoil.key"],
    ["scripts[0].source", "scripts: [{name: s, source: /root/.ssh/id_ed25519}]\n", "/root/.ssh/id_ed25519"],
    ["repositories[0].key", "repositories: [{name: r, suite: stable, key: /etc/shadow}]\n", "/etc/shadow"],
    ["ansible[0].playbook", "ansible: [{playbook: ../../../etc/ansible/site.yml}]\n", "../../../etc/ansible/site.yml"],
  ];
  for (const [field, recipe, written] of attacks) {
    const e = await refusal(recipe);
    assert.equal(e.code, "RECIPE_INVALID", recipe);
    assert.deepEqual(e.problems, [{ path: field, message: outside(written) }], recipe);
    assert.match(e.message, new RegExp(`recipe\\.yaml: ${field.replace(/[[\].]/g, "\\$&")}: `), "the message names the field");
  }
  // base.image has no HEAD (a recipe has one base): written whole.
  await writeFile(path.join(dir, "recipe.yaml"), "apiVersion: kiln/v1\nname: x\nbase: {image: /var/lib/kiln/objects/boot-images/1/rootfs}\noutputs: [squashfs]\n");
  const base = await loadRecipe(path.join(dir, "recipe.yaml")).then(
    () => assert.fail("base.image outside the folder was accepted"),
    (e: KilnError) => e,
  );
  assert.deepEqual(base.problems, [{ path: "base.image", message: outside("/var/lib/kiln/objects/boot-images/1/rootfs") }]);
});

void test("the refusal does not tell whether the host file exists: the same words for a real file, a missing one and a folder", async () => {
  const said = async (p: string) => (await refusal(`files: [{path: /etc/x, source: ${JSON.stringify(p)}}]\n`)).problems[0]!.message.replace(JSON.stringify(p), "P");
  const words = new Set([
    await said(path.join(data, "tokens.json")), // exists
    await said(path.join(data, "no-such-file")), // does not
    await said(data), // a folder
    await said("../../data/tokens.json"),
    await said("../../data/no-such-file"),
  ]);
  assert.deepEqual([...words], [`P is outside the recipe's folder; ${FIX}`]);
});

void test("a symbolic link inside the folder that leads out is refused, whether its target exists or not", async () => {
  const linked = async (name: string, target: string) => {
    const e = await refusal(`files: [{path: /etc/x, source: ./${name}}]\n`, async () => {
      await rm(path.join(dir, name), { force: true, recursive: true });
      await symlink(target, path.join(dir, name));
    });
    return e.problems;
  };
  assert.deepEqual(await linked("shadow", "/etc/shadow"), [{ path: "files[0].source", message: outside("./shadow") }]);
  assert.deepEqual(await linked("tokens", "../../data/tokens.json"), [{ path: "files[0].source", message: outside("./tokens") }]);
  assert.deepEqual(await linked("gone", "../../data/no-such-file"), [{ path: "files[0].source", message: outside("./gone") }], "no existence oracle through links");
  // A folder link: ./etc/hostname goes through etc -> /etc.
  const viaDir = await refusal("files: [{path: /etc/x, source: ./etc/hostname}]\n", async () => {
    await rm(path.join(dir, "etc"), { force: true, recursive: true });
    await symlink("/etc", path.join(dir, "etc"));
  });
  assert.deepEqual(viaDir.problems, [{ path: "files[0].source", message: outside("./etc/hostname") }]);
  // A chain that looks inside when read as text (d/d/d/.. is "d/d") but is not: d -> . makes it "..".
  const chain = await refusal("caCertificates: [./up/data/tokens.json]\n", async () => {
    await rm(path.join(dir, "d"), { force: true });
    await rm(path.join(dir, "up"), { force: true });
    await symlink(".", path.join(dir, "d"));
    await symlink("d/d/d/../..", path.join(dir, "up"));
  });
  assert.deepEqual(chain.problems, [{ path: "caCertificates[0]", message: outside("./up/data/tokens.json") }]);
  // A loop is an error at its field, not a hang.
  const loop = await refusal("scripts: [{name: s, source: ./loop}]\n", async () => {
    await rm(path.join(dir, "loop"), { force: true });
    await symlink("loop", path.join(dir, "loop"));
  });
  assert.equal(loop.problems[0]?.path, "scripts[0].source");
  assert.match(loop.problems[0]!.message, /too many levels of symbolic links/);
});

void test("a link in a playbook's roles/ folder that leads out is refused: Ansible reads it on the build host", async () => {
  const e = await refusal("ansible: [{playbook: ./site.yml}]\n", async () => {
    await writeFile(path.join(dir, "site.yml"), "- hosts: all\n  roles: [r]\n");
    await rm(path.join(dir, "roles"), { force: true, recursive: true });
    await mkdir(path.join(dir, "roles"));
    await symlink("/etc", path.join(dir, "roles", "r"));
  });
  assert.deepEqual(e.problems, [{ path: "ansible[0].playbook", message: outside("./roles/r") }]);
  await rm(path.join(dir, "roles"), { recursive: true, force: true });
});

void test("links and names that stay inside the folder still work, and the build reads the real file", async () => {
  await rm(path.join(dir, "sub"), { recursive: true, force: true });
  await mkdir(path.join(dir, "sub"));
  await writeFile(path.join(dir, "sub", "ca.pem"), "pem\n");
  await rm(path.join(dir, "ca"), { force: true });
  await symlink("sub/../sub/ca.pem", path.join(dir, "ca"));
  await writeFile(path.join(dir, "recipe.yaml"), HEAD + "files: [{path: /etc/motd, source: sub/../motd}]\ncaCertificates: [./ca]\n");
  const l = await loadRecipe(path.join(dir, "recipe.yaml"));
  assert.equal(l.recipe.files[0]?.source, path.join(dir, "motd"));
  assert.deepEqual(l.recipe.caCertificates, [path.join(dir, "sub", "ca.pem")]);
});

void test("kiln recipe check and kiln build refuse a host path with exit 2, naming the field and the fix", async () => {
  await writeFile(path.join(dir, "recipe.yaml"), HEAD + "files: [{path: /etc/x, source: /etc/shadow}]\n");
  for (const args of [["recipe", "check", path.join(dir, "recipe.yaml")], ["build", path.join(dir, "recipe.yaml"), "--out", path.join(top, "out"), "--cache-dir", path.join(top, "cache")]]) {
    const r = await runKiln(args);
    assert.equal(r.code, 2, `${args[0]}: ${r.stderr}`);
    assert.match(r.stderr, /files\[0\]\.source: "\/etc\/shadow" is outside the recipe's folder; put the file in the recipe's folder and name it relative to it/, args[0]);
    assert.doesNotMatch(r.stderr, /\n\s+at /, "no stack");
  }
});
