/**
 * Host profile, Ansible, qcow2 and ISO in the planner: where the stages go, what keys them, and
 * the kernel command line the profile makes. Pure: no root, no host.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { parseRecipe, type LoadedRecipe } from "../../src/recipe/load.js";
import { kernelCmdline, planBuild, type Plan, type PlanInputs } from "../../src/plan/plan.js";
import { parseDeb822Sources } from "../../src/host/apt-sources.js";
import { TOOL_PACKAGES, type ToolVersions } from "../../src/host/tools.js";
import type { ConfigOptions } from "../../src/stages/config.js";

const env: PlanInputs = {
  // A version for every tool: the planner refuses to key a stage whose tool was not looked up.
  tools: { ...(Object.fromEntries(Object.keys(TOOL_PACKAGES).map((t) => [t, "1.0"])) as ToolVersions), ...{ mmdebstrap: "1.3.5-2", mksquashfs: "1:4.5.1-1", "dpkg-query": "1.21.22", chroot: "9.1-1", xorriso: "1.5.4-4", "qemu-img": "1:7.2" } },
  hostSources: parseDeb822Sources("Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\nComponents: main\n"),
  initramfsDigest: "sha256:aaaa",
  playbookTrees: { "/recipes/a/site.yml": "sha256:tree1" },
};

const RECIPE = `apiVersion: kiln/v1
name: t
base: { debian: bookworm }
packages: [systemd, udev]
scripts: [{ name: s, run: "true" }]
config:
  cmdline: [console=ttyS0]
  sysctl: { vm.swappiness: 10 }
  users: [{ name: ops, sshAuthorizedKeys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE3x ops@example"] }]
  hugepages: [{ size: 1G, count: 4 }, { size: 2M, count: 512 }]
  apparmor: true
  dkms: [acpi-call-dkms]
ansible: [{ playbook: ./site.yml, vars: { a: 1 } }]
kernels: [{ flavor: generic, package: linux-image-amd64 }, { flavor: rt, package: linux-image-rt-amd64 }]
outputs: [kernel, initrd, manifest, qcow2, iso]
cmdline: [quiet]
`;

function load(text: string, inputs: Record<string, string> = { "/recipes/a/site.yml": "sha256:play1" }): LoadedRecipe {
  return { recipe: parseRecipe(text, "r.yaml", "/recipes/a"), file: "/recipes/a/r.yaml", dir: "/recipes/a", sha256: "x", inputs };
}

const keys = (p: Plan) => Object.fromEntries([...p.root, ...p.kernels, ...p.artifacts].map((s) => [s.name, s.key]));

test("config and ansible are layers after scripts and before seal", () => {
  const p = planBuild(load(RECIPE), env);
  assert.deepEqual(p.root.map((s) => s.name), ["bootstrap", "packages", "scripts", "config", "ansible", "seal"]);
  const config = p.root.find((s) => s.name === "config")!.options as ConfigOptions;
  assert.deepEqual(config.sysctl, [["vm.swappiness", "10"]]);
  assert.equal(config.users[0]!.name, "ops");
  const ansible = p.root.find((s) => s.name === "ansible")!;
  assert.deepEqual(ansible.options, { plays: [{ playbook: "/recipes/a/site.yml", vars: { a: 1 } }] });
  assert.deepEqual(ansible.record.inputs, { "ansible[0].playbook": "sha256:play1", "ansible[0].folder": "sha256:tree1" });
});

test("apparmor: true installs apparmor; DKMS goes into every kernel layer", () => {
  const p = planBuild(load(RECIPE), env);
  assert.deepEqual((p.root.find((s) => s.name === "packages")!.options as { install: string[] }).install, ["systemd", "udev", "apparmor"]);
  for (const k of p.kernels) assert.deepEqual((k.options as { dkms: string[] }).dkms, ["acpi-call-dkms"]);
  const without = planBuild(load(RECIPE.replace("  dkms: [acpi-call-dkms]\n", "")), env);
  assert.equal((without.kernels[0]!.options as { dkms?: string[] }).dkms, undefined);
});

test("the kernel command line: top-level words, config.cmdline, huge pages, AppArmor", () => {
  const r = load(RECIPE).recipe;
  assert.deepEqual(kernelCmdline(r), ["quiet", "console=ttyS0", "default_hugepagesz=1G", "hugepagesz=1G", "hugepages=4", "hugepagesz=2M", "hugepages=512", "apparmor=1", "security=apparmor"]);
  const off = load(RECIPE.replace("apparmor: true", "apparmor: false").replace(/ {2}hugepages:.*\n/, "")).recipe;
  assert.deepEqual(kernelCmdline(off), ["quiet", "console=ttyS0", "apparmor=0"]);
});

test("qcow2 reads the first flavor's layer; the ISO reads the squashfs and that flavor's kernel", () => {
  const p = planBuild(load(RECIPE), env);
  assert.deepEqual(p.artifacts.map((s) => s.name), ["squashfs", "manifest", "qcow2", "iso"], "the ISO needs the squashfs even if out/ does not");
  const ga = p.kernels[0]!;
  const qcow2 = p.artifacts.find((s) => s.name === "qcow2")!;
  assert.equal(qcow2.flavor, "generic");
  assert.equal(qcow2.record.parent, ga.key);
  assert.deepEqual((qcow2.options as { cmdline: string[] }).cmdline, kernelCmdline(load(RECIPE).recipe));
  const iso = p.artifacts.find((s) => s.name === "iso")!;
  const squashfs = p.artifacts.find((s) => s.name === "squashfs")!;
  assert.deepEqual(iso.uses, {
    squashfs: { section: "artifacts", key: squashfs.key, file: "squashfs" },
    kernel: { section: "layers", key: ga.key, file: "boot-kernel" },
    initrd: { section: "layers", key: ga.key, file: "boot-initrd" },
  });
  assert.equal(iso.record.inputs.squashfs, `stage:${squashfs.key}/squashfs`);
});

test("what changes which key: the ISO follows the squashfs, the disk follows the disk settings", () => {
  const a = keys(planBuild(load(RECIPE), env));
  const xz = keys(planBuild(load(RECIPE + "squashfs: { compression: xz }\n"), env));
  assert.notEqual(xz.iso, a.iso);
  assert.equal(xz.qcow2, a.qcow2);
  const disk = keys(planBuild(load(RECIPE + "disk: { size: 8G }\n"), env));
  assert.notEqual(disk.qcow2, a.qcow2);
  assert.equal(disk.iso, a.iso);
  const role = keys(planBuild(load(RECIPE), { ...env, playbookTrees: { "/recipes/a/site.yml": "sha256:tree2" } }));
  assert.notEqual(role.ansible, a.ansible, "editing a role beside the playbook rebuilds");
  assert.equal(role.config, a.config);
  const rt = keys(planBuild(load(RECIPE.replace("{ flavor: rt, package: linux-image-rt-amd64 }", "{ flavor: rt2, package: linux-image-rt-amd64 }")), env));
  assert.equal(rt.qcow2, a.qcow2, "only the first flavor is on the disk");
});

test("a profile of boot parameters only adds no layer", () => {
  const r = RECIPE.replace(/config:\n( {2}.*\n)+/, "config: { cmdline: [quiet], hugepages: [{ count: 8 }] }\n").replace(/ansible: .*\n/, "");
  const p = planBuild(load(r), env);
  assert.deepEqual(p.root.map((s) => s.name), ["bootstrap", "packages", "scripts", "seal"]);
});
