/**
 * kernel: one flavor, in its own layer over the sealed root (maas-images' kpack-from-image,
 * docs/architecture.md#kernels-and-the-initramfs). It puts Kiln's diskless-root hook
 * (assets/initramfs) into /etc/initramfs-tools, installs initramfs-tools, busybox and the kernel
 * package in one apt transaction with INITRD=No, and builds the initramfs exactly once with
 * update-initramfs. vmlinuz and the initrd are exported as
 * the flavor's boot-kernel and boot-initrd.
 *
 * DKMS packages (config.dkms) go in after the kernel, with the linux-headers of exactly that
 * kernel version (from the kernel's suite), so each flavor builds the module against its own
 * kernel; the modules are added to the initramfs, since a diskless root gets its modules from it.
 */
import { chmod, copyFile, cp, lstat, readdir, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { treeDigest } from "../cache/tree-digest.js";
import { KilnError } from "../errors.js";
import type { ChrootSession } from "../host/chroot.js";
import { mkdirInRoot, resolveInRoot } from "../host/root-path.js";
import { z } from "zod";
import { removeBuildState } from "./reproducible.js";
import { defineLayerStage } from "./stage.js";

const KernelOptions = z.strictObject({
  flavor: z.string(),
  package: z.string(),
  /** Install the kernel from this suite (e.g. bookworm-backports), added for the stage only. */
  suite: z.string().optional(),
  /** `deb …` line for `suite`. */
  suiteAptLine: z.string().optional(),
  /** DKMS packages to build against this kernel (config.dkms). */
  dkms: z.array(z.string()).optional(),
});
export type KernelOptions = z.output<typeof KernelOptions>;

/** What a flavor's layer records: out/ and the catalog name the kernel by it. */
export const KernelFacts = z.object({ kernelVersion: z.string(), kpackage: z.string(), dkmsModules: z.array(z.string()).optional() });

/** The initramfs-tools files of the diskless-root hook, shipped with Kiln. */
export const INITRAMFS_ASSETS = fileURLToPath(new URL("../../../assets/initramfs", import.meta.url));

const INITRAMFS_PACKAGES = ["initramfs-tools", "busybox", "zstd"];

export const kernel = defineLayerStage({
  kind: "kernel",
  summary: "Install a kernel flavor and build its diskless initramfs",
  place: "flavor",
  options: KernelOptions,
  facts: KernelFacts,
  // One sibling layer per flavor on the sealed root; a change to the diskless hook rebuilds them all.
  plan: ({ recipe: r, archive, host }) =>
    r.kernels.map((k) => ({
      name: `kernel:${k.flavor}`,
      flavor: k.flavor,
      package: k.package,
      options: {
        flavor: k.flavor,
        package: k.package,
        suite: k.suite,
        suiteAptLine: k.suite && archive ? `deb ${archive} ${k.suite} main` : undefined,
        dkms: r.config.dkms?.length ? r.config.dkms : undefined,
      },
      inputs: { "initramfs-assets": host.initramfsDigest ?? "missing" },
    })),
  hostFacts: async () => ({ initramfsDigest: await treeDigest(INITRAMFS_ASSETS) }),
  outputs: [
    { file: "boot-kernel", artifact: "kernel", output: "kernel" },
    { file: "boot-initrd", artifact: "initrd", output: "initrd" },
  ],
  base: false,
  tools: ["chroot"],
  async run(ctx, o) {
    const s = await ctx.chroot();
    let version: string;
    const sourcesDir = await mkdirInRoot(ctx.root, "/etc/apt/sources.list.d");
    const suiteList = path.join(sourcesDir, "kiln-kernel-suite.list");
    if (o.suite && o.suiteAptLine) await writeFile(suiteList, o.suiteAptLine + "\n");
    try {
      await s.apt(["update"]);
      // The hook goes in first (initramfs-tools ships none of these files); then initramfs-tools
      // and the kernel in one transaction. INITRD=No stops the kernel's postinst hook from
      // building an initramfs, and initramfs-tools' own trigger (update-initramfs -u) finds no
      // initrd to update, so the one build is ours, below.
      const etc = await mkdirInRoot(ctx.root, "/etc/initramfs-tools");
      await cp(INITRAMFS_ASSETS, etc, { recursive: true, force: true });
      ctx.log.line(`installed the diskless-root hook into /etc/initramfs-tools`);
      await s.apt(["install", ...INITRAMFS_PACKAGES, o.suite ? `${o.package}/${o.suite}` : o.package], { env: { INITRD: "No" } });
      version = await findKernelVersion(ctx.root, s, o.package);
      ctx.log.line(`kernel ${o.package} → ${version}`);
      if (o.dkms?.length) ctx.facts.dkmsModules = await buildDkms(ctx.root, s, version, o, (l) => ctx.log.line(l));
    } finally {
      await rm(suiteList, { force: true });
    }
    const initrd = await resolveInRoot(ctx.root, `/boot/initrd.img-${version}`);
    const hasInitrd = (await lstat(initrd).catch(() => undefined)) !== undefined;
    await s.run(["update-initramfs", hasInitrd ? "-u" : "-c", "-k", version]);

    await copyFile(await resolveInRoot(ctx.root, `/boot/vmlinuz-${version}`), path.join(ctx.outputs, "boot-kernel"));
    await copyFile(initrd, path.join(ctx.outputs, "boot-initrd"));
    ctx.facts.kernelVersion = version;
    ctx.facts.kpackage = o.package;
    // The flavor's layer goes on the sealed root as it is (disk, SBOM): the same build-time state goes as in seal.
    await removeBuildState(ctx.root, ctx.log);
  },
});

/**
 * The kernel version `pkg` installed: the /boot/vmlinuz-* owned by `pkg` or by a package it
 * depends on (meta-packages such as linux-image-amd64 own no kernel themselves).
 */
async function findKernelVersion(root: string, s: ChrootSession, pkg: string): Promise<string> {
  const boot = await resolveInRoot(root, "/boot", true);
  const versions = (await readdir(boot).catch(() => [] as string[]))
    .filter((n) => n.startsWith("vmlinuz-"))
    .map((n) => n.slice("vmlinuz-".length));
  if (versions.length === 0) {
    throw new KilnError("STAGE_FAILED", `kernel: ${pkg} installed no /boot/vmlinuz-*`, {
      hint: "kernels[].package must be a Linux kernel image package, e.g. linux-image-amd64",
    });
  }
  if (versions.length === 1) return versions[0]!;
  const closure = await dependencyClosure(s, pkg, 3);
  for (const v of versions) {
    const r = await s.run(["dpkg-query", "-S", `/boot/vmlinuz-${v}`], { captureStdout: true, quietStdout: true, okCodes: [0, 1] });
    const owner = r.stdout.split(":")[0]?.trim();
    if (owner && closure.has(owner)) return v;
  }
  throw new KilnError("STAGE_FAILED", `kernel: cannot tell which of ${versions.join(", ")} ${pkg} installed`);
}

/**
 * Installs the flavor's headers and the DKMS packages (their postinst builds for every kernel
 * with headers; autoinstall makes sure of this one), checks modules were built, and lists them in
 * an initramfs hook. Returns the module names.
 */
async function buildDkms(root: string, s: ChrootSession, version: string, o: KernelOptions, log: (l: string) => void): Promise<string[]> {
  const headers = `linux-headers-${version}`;
  await s.apt(["install", o.suite ? `${headers}/${o.suite}` : headers]);
  await s.apt(["install", "dkms", ...o.dkms!]);
  await s.run(["dkms", "autoinstall", "-k", version]);
  const dir = await resolveInRoot(root, `/lib/modules/${version}/updates/dkms`);
  const modules = (await readdir(dir).catch(() => [] as string[]))
    .filter((n) => /\.ko(\.(xz|zst|gz))?$/.test(n))
    .map((n) => n.replace(/\.ko(\.(xz|zst|gz))?$/, ""))
    .sort();
  if (modules.length === 0) {
    throw new KilnError("STAGE_FAILED", `kernel: DKMS built no module for ${version} from ${o.dkms!.join(", ")}`, {
      hint: "see the dkms build output in the stage log; the package may not support this kernel",
    });
  }
  log(`dkms: built ${modules.join(", ")} for ${version}`);
  const hook = await resolveInRoot(root, "/etc/initramfs-tools/hooks/kiln-dkms");
  await writeFile(hook, `#!/bin/sh
# Written by Kiln: this flavor's DKMS modules go into its initramfs, so a diskless root (whose
# modules are copied from the initramfs) has them too.
PREREQ=""
prereqs() { echo "$PREREQ"; }
case "$1" in prereqs) prereqs; exit 0 ;; esac
. /usr/share/initramfs-tools/hook-functions
manual_add_modules ${modules.join(" ")}
`);
  await chmod(hook, 0o755);
  return modules;
}

async function dependencyClosure(s: ChrootSession, pkg: string, depth: number): Promise<Set<string>> {
  const seen = new Set<string>([pkg]);
  let frontier = [pkg];
  for (let d = 0; d < depth && frontier.length > 0; d++) {
    const next: string[] = [];
    for (const p of frontier) {
      const r = await s.run(["dpkg-query", "-W", "-f", "${Depends}", p], { captureStdout: true, quietStdout: true, okCodes: [0, 1] });
      for (const dep of r.stdout.split(",")) {
        const name = dep.split("|")[0]!.trim().split(/[\s(:]/)[0];
        if (name && !seen.has(name)) {
          seen.add(name);
          next.push(name);
        }
      }
    }
    frontier = next;
  }
  return seen;
}
