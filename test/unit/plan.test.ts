import { test } from "node:test";
import assert from "node:assert/strict";
import { parseRecipe, type LoadedRecipe } from "../../src/recipe/load.js";
import { planBuild, type Plan, type PlanInputs } from "../../src/plan/plan.js";
import { parseDeb822Sources } from "../../src/host/apt-sources.js";
import { TOOL_PACKAGES, type ToolVersions } from "../../src/host/tools.js";

const env: PlanInputs = {
  // A version for every tool: the planner refuses to key a stage whose tool was not looked up.
  tools: { ...(Object.fromEntries(Object.keys(TOOL_PACKAGES).map((t) => [t, "1.0"])) as ToolVersions), ...{ mmdebstrap: "1.3.5-2", mksquashfs: "1:4.5.1-1", "dpkg-query": "1.21.22", chroot: "9.1-1" } },
  hostSources: parseDeb822Sources("Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n"),
  initramfsDigest: "sha256:aaaa",
};

const RECIPE = `apiVersion: kiln/v1
name: t
base: { debian: bookworm }
packages: [systemd, udev]
files: [{ path: /etc/motd, content: "hello\\n" }]
scripts: [{ name: s, run: "true" }]
kernels: [{ flavor: generic, package: linux-image-amd64 }]
`;

function load(text: string, dir = "/recipes/a", inputs: Record<string, string> = {}): LoadedRecipe {
  return { recipe: parseRecipe(text, "r.yaml", dir), file: `${dir}/r.yaml`, dir, sha256: "x", inputs };
}

const keys = (p: Plan) => Object.fromEntries([...p.root, ...p.kernels, ...p.artifacts].map((s) => [s.name, s.key]));

test("the plan has one stage per thing the recipe asks for, in order", () => {
  const p = planBuild(load(RECIPE), env);
  assert.deepEqual(p.root.map((s) => s.name), ["bootstrap", "packages", "files", "scripts", "seal"]);
  assert.deepEqual(p.kernels.map((s) => s.name), ["kernel:generic"]);
  assert.deepEqual(p.artifacts.map((s) => s.name), ["squashfs", "manifest"]);
  const boot = p.root[0]!.options as { aptLines: string[] };
  assert.deepEqual(boot.aptLines, ["deb http://mirror.example/debian bookworm main", "deb http://mirror.example/debian bookworm-updates main"]);
  // every layer's parent is the one below it; kernels and artifacts sit on the sealed root
  assert.equal(p.root[1]!.record.parent, p.root[0]!.key);
  assert.equal(p.kernels[0]!.record.parent, p.root.at(-1)!.key);
  assert.equal(p.artifacts[0]!.record.parent, p.root.at(-1)!.key);
});

test("changing one file reruns only the stages from there on", () => {
  const a = keys(planBuild(load(RECIPE), env));
  const b = keys(planBuild(load(RECIPE.replace("hello", "changed")), env));
  assert.equal(b.bootstrap, a.bootstrap);
  assert.equal(b.packages, a.packages);
  for (const s of ["files", "scripts", "seal", "kernel:generic", "squashfs", "manifest"]) assert.notEqual(b[s], a[s], s);
});

test("adding a flavor reuses the sealed root and the first flavor", () => {
  const a = keys(planBuild(load(RECIPE), env));
  const b = keys(planBuild(load(RECIPE.replace("kernels: [", "kernels: [{ flavor: rt, package: linux-image-rt-amd64 }, ")), env));
  for (const s of ["bootstrap", "packages", "files", "scripts", "seal", "kernel:generic", "squashfs", "manifest"]) assert.equal(b[s], a[s], s);
  assert.ok(b["kernel:rt"]);
});

test("moving the recipe folder keeps every key; changing a referenced file's content does not", () => {
  const withSource = RECIPE.replace('content: "hello\\n"', "source: ./motd");
  const a = keys(planBuild(load(withSource, "/recipes/a", { "/recipes/a/motd": "sha256:11" }), env));
  const moved = keys(planBuild(load(withSource, "/elsewhere/b", { "/elsewhere/b/motd": "sha256:11" }), env));
  const edited = keys(planBuild(load(withSource, "/recipes/a", { "/recipes/a/motd": "sha256:22" }), env));
  assert.deepEqual(moved, a);
  assert.notEqual(edited.files, a.files);
  assert.equal(edited.packages, a.packages);
});

test("a new tool version or a changed diskless hook invalidates only the stages that use them", () => {
  const a = keys(planBuild(load(RECIPE), env));
  const newSquash = keys(planBuild(load(RECIPE), { ...env, tools: { ...env.tools, mksquashfs: "1:4.6-1" } }));
  assert.notEqual(newSquash.squashfs, a.squashfs);
  assert.equal(newSquash.seal, a.seal);
  const newHook = keys(planBuild(load(RECIPE), { ...env, initramfsDigest: "sha256:bbbb" }));
  assert.notEqual(newHook["kernel:generic"], a["kernel:generic"]);
  assert.equal(newHook.squashfs, a.squashfs);
});

test("an import that asks for nothing publishes the original squashfs, unsealed", () => {
  const r = `apiVersion: kiln/v1\nname: i\nbase: { image: ./cloud.squashfs }\nkernels: [{ flavor: generic, package: linux-image-amd64 }]\n`;
  const p = planBuild(load(r, "/d", { "/d/cloud.squashfs": "sha256:cc" }), { ...env, importFormat: "squashfs" });
  assert.equal(p.unchangedImport, true);
  assert.deepEqual(p.root.map((s) => s.name), ["import"]);
  assert.equal(p.artifacts.find((s) => s.name === "squashfs")!.kind, "squashfs-copy");
  const q = planBuild(load(r, "/d", { "/d/cloud.squashfs": "sha256:cc" }), { ...env, importFormat: "qcow2" });
  assert.equal(q.artifacts.find((s) => s.name === "squashfs")!.kind, "squashfs", "a qcow2 import is packed, not copied");
  const changed = planBuild(load(r + "packages: [curl]\n", "/d", { "/d/cloud.squashfs": "sha256:cc" }), { ...env, importFormat: "squashfs" });
  assert.equal(changed.unchangedImport, false);
  assert.deepEqual(changed.root.map((s) => s.name), ["import", "packages", "seal"]);
});

test("a kernel from another suite gets that suite from the base's mirror", () => {
  const r = RECIPE.replace("package: linux-image-amd64 }", "package: linux-image-amd64, suite: bookworm-backports }");
  const k = planBuild(load(r), env).kernels[0]!;
  assert.equal((k.options as { suiteAptLine: string }).suiteAptLine, "deb http://mirror.example/debian bookworm-backports main");
});

test("a repository without uri uses the base's mirror; its key file is keyed by content", () => {
  const r = RECIPE.replace("packages: [systemd, udev]", "repositories: [{ name: backports, suite: bookworm-backports, pin: 100, key: ./k.asc }]\npackages: [systemd, udev, tmux]\nupgrade: [tmux]");
  const p = planBuild(load(r, "/recipes/a", { "/recipes/a/k.asc": "sha256:77" }), env);
  const repos = p.root.find((s) => s.name === "repositories")!;
  assert.deepEqual(repos.options, {
    repositories: [{ name: "backports", uri: "http://mirror.example/debian", suite: "bookworm-backports", components: ["main"], pin: 100, keyFile: "/recipes/a/k.asc" }],
  });
  assert.equal((repos.record.options as { repositories: Array<{ keyFile: string }> }).repositories[0]!.keyFile, "repositories[0].key");
  assert.deepEqual(repos.record.inputs, { "repositories[0].key": "sha256:77" });
  assert.deepEqual((p.root.find((s) => s.name === "packages")!.options as { upgradeSuites: string[] }).upgradeSuites, ["bookworm-backports"]);
});

test("site CAs (the service's --site-ca) go in a layer before the seal; their content is in its key, their path is not", () => {
  const plain = planBuild(load(RECIPE), env);
  const a = planBuild(load(RECIPE), { ...env, siteCas: { "/etc/kiln/site.pem": "sha256:11" } });
  const moved = planBuild(load(RECIPE), { ...env, siteCas: { "/srv/other/site.pem": "sha256:11" } });
  const renewed = planBuild(load(RECIPE), { ...env, siteCas: { "/etc/kiln/site.pem": "sha256:22" } });
  assert.deepEqual(a.root.map((s) => s.name), ["bootstrap", "packages", "files", "scripts", "site-ca", "seal"]);
  assert.equal(keys(a).scripts, keys(plain).scripts, "the layers below are shared with builds without site CAs");
  assert.equal(keys(moved)["site-ca"], keys(a)["site-ca"]);
  assert.notEqual(keys(renewed)["site-ca"], keys(a)["site-ca"]);
  assert.deepEqual((a.root.find((s) => s.name === "site-ca")!.options as { certificates: string[] }).certificates, ["/etc/kiln/site.pem"]);
});

test("an import that asks for no change is still changed by site CAs", () => {
  const imported = `apiVersion: kiln/v1\nname: t\nbase: { image: ./root.squashfs }\noutputs: [squashfs]\n`;
  const inputs = { "/recipes/a/root.squashfs": "sha256:33" };
  assert.equal(planBuild(load(imported, "/recipes/a", inputs), { ...env, importFormat: "squashfs" }).unchangedImport, true);
  const withCa = planBuild(load(imported, "/recipes/a", inputs), { ...env, importFormat: "squashfs", siteCas: { "/etc/kiln/site.pem": "sha256:11" } });
  assert.equal(withCa.unchangedImport, false);
  assert.deepEqual(withCa.root.map((s) => s.name), ["import", "site-ca", "seal"]);
});

test("a lock is part of every key: a locked build never reuses an unlocked or another lock's entry", () => {
  const plain = keys(planBuild(load(RECIPE), env));
  const locked = keys(planBuild(load(RECIPE), { ...env, lock: "sha256:1111" }));
  const other = keys(planBuild(load(RECIPE), { ...env, lock: "sha256:2222" }));
  for (const s of Object.keys(plain)) {
    assert.notEqual(locked[s], plain[s], s);
    assert.notEqual(other[s], locked[s], s);
  }
  const p = planBuild(load(RECIPE), { ...env, lock: "sha256:1111" });
  assert.deepEqual(p.root[0]!.record.inputs, { "kiln.lock": "sha256:1111" }, "an input of the base stage");
  assert.equal(p.root[1]!.record.inputs["kiln.lock"], undefined, "and through it of the others");
});
