/**
 * qcow2: a disk that boots on BIOS and UEFI machines (Secure Boot included), made from the sealed
 * root with the first flavor's kernel layer on top (ctx.root is their read-only overlay).
 *
 * Nothing is loop-mounted and no qemu-nbd is used (docs/architecture.md#disks-and-isos):
 *  1. a small staging tree (fstab by UUID, grub.cfg, GRUB's i386-pc modules, mount points) goes
 *     over the root as the top layer of a second read-only overlay;
 *  2. a sparse raw file gets the GPT (sfdisk), the root file system built from that overlay at
 *     its partition's offset (mkfs.ext4 -d -E offset=…), empty ext4 for extra partitions, the
 *     ESP as FAT32 at its offset (mkfs.vfat --offset + mtools) with shim and signed GRUB;
 *  3. GRUB's BIOS core goes into the BIOS boot partition and boot.img into the MBR, written
 *     with plain file writes (grub.ts), as grub-bios-setup would;
 *  4. qemu-img converts the raw file to a compressed qcow2.
 *
 * Reproducible (docs/reproducible.md): the file system UUIDs, ext4 hash seeds, GPT disk and
 * partition GUIDs and the FAT volume id are derived from the stage's key and the build's epoch
 * (reproducible.ts); mke2fs and debugfs run at E2FSPROGS_FAKE_TIME = the epoch, and since
 * `mkfs.ext4 -d` copies each source file's ctime and atime (the time of the build), debugfs then
 * sets both to the epoch; mkfs.vfat runs --invariant, mtools at SOURCE_DATE_EPOCH.
 */
import { copyFile, lstat, mkdir, mkdtemp, open, readdir, readFile, truncate, writeFile } from "node:fs/promises";
import path from "node:path";
import { KilnError } from "../errors.js";
import { mountOverlay } from "../host/mount.js";
import { resolveInRoot } from "../host/root-path.js";
import { Scope } from "../host/scope.js";
import { removeTree } from "../host/workdir.js";
import { DiskPartitionSchema, QCOW2_COMPRESSIONS } from "../recipe/schema.js";
import { parseSize } from "../size.js";
import { efiBootFiles, EFI_FILES, fatUuid, writeFatImage } from "./boot/efi.js";
import { biosBootSectors, diskGrubCfg, espStubCfg, GRUB_I386_PC, makeBiosCore } from "./boot/grub.js";
import { ESP_SIZE, MIB, planDiskLayout, rootSizeFor, sfdiskScript, type DiskLayout } from "./disk/layout.js";
import { z } from "zod";
import { clampTimes, derivedHex, derivedUuid } from "./reproducible.js";
import { defineArtifactStage, type ArtifactContext } from "./stage.js";

const Qcow2Options = z.strictObject({
  name: z.string(),
  flavor: z.string(),
  /** Kernel command-line words after root=UUID=… ro. */
  cmdline: z.array(z.string()),
  /** Whole disk, e.g. "8G"; computed from the content when absent. */
  size: z.string().optional(),
  filesystem: z.literal("ext4"),
  partitions: z.array(DiskPartitionSchema),
  compression: z.enum(QCOW2_COMPRESSIONS),
});
export type Qcow2Options = z.output<typeof Qcow2Options>;

export const QCOW2_FILE = "disk.qcow2";

export const qcow2 = defineArtifactStage({
  kind: "qcow2",
  summary: "Make a BIOS + UEFI bootable qcow2 disk (GPT, ext4 root, GRUB, shim)",
  options: Qcow2Options,
  facts: z.object({ kernelVersion: z.string(), rootUuid: z.string(), espUuid: z.string(), diskBytes: z.number(), rootBytes: z.number() }),
  // The disk boots the first flavor (the GA kernel, as maas-images calls it): built on its layer.
  plan({ recipe: r, wants, cmdline, planned }) {
    const ga = planned("kernel")[0];
    if (!wants.has("qcow2") || !ga?.flavor) return [];
    const d = r.disk ?? { filesystem: "ext4" as const, partitions: [], compression: "zstd" as const };
    const options = { name: r.name, flavor: ga.flavor, cmdline, size: d.size, filesystem: d.filesystem, partitions: d.partitions, compression: d.compression };
    return [{ options, parent: ga, flavor: ga.flavor }];
  },
  outputs: [{ file: QCOW2_FILE, artifact: "qcow2", output: "qcow2" }],
  tools: ["qemu-img", "sfdisk", "mkfs.ext4", "mkfs.vfat", "mcopy", "grub-mkimage", "du", "grub-pc-bin", "grub-efi-amd64-signed", "shim-signed"],
  needsRoot: true,
  async run(ctx, o) {
    const work = await mkdtemp(path.join(ctx.workDir, "qcow2-"));
    try {
      await makeDisk(ctx, o, work);
    } finally {
      // Never crosses into a mount, should an unmount have failed; the build's work dir goes anyway.
      await removeTree(work, ctx.log).catch((e: unknown) => ctx.log.line(`qcow2: left ${work}: ${(e as Error).message}`));
    }
  },
});

/** A recipe's disk or partition size; the recipe schema has checked its form, so a miss is a bug. */
function recipeSize(text: string): number {
  const bytes = parseSize(text);
  if (bytes === undefined) throw new Error(`qcow2: not a size: ${text}`);
  return bytes;
}

async function makeDisk(ctx: ArtifactContext, o: Qcow2Options, work: string): Promise<void> {
  const version = await kernelVersionIn(ctx.root, o.flavor);
  const rootUuid = derivedUuid(ctx.ids, "root");
  const espId = derivedHex(ctx.ids, "esp", 4);
  const extras = o.partitions.map((p) => ({ ...p, bytes: recipeSize(p.size), uuid: derivedUuid(ctx.ids, `partition:${p.name}`) }));
  for (const e of extras) await checkMountpoint(ctx.root, e.mountpoint, e.name);

  // 1. The staging tree: what the disk needs that the root does not have.
  const staging = path.join(work, "staging");
  await mkdir(path.join(staging, "etc"), { recursive: true });
  await mkdir(path.join(staging, "boot/efi"), { recursive: true });
  for (const e of extras) await mkdir(path.join(staging, e.mountpoint), { recursive: true });
  await writeFile(path.join(staging, "etc/fstab"), await fstab(ctx.root, [
    { spec: `UUID=${rootUuid}`, mountpoint: "/", type: "ext4", options: "errors=remount-ro", pass: 1 },
    { spec: `UUID=${fatUuid(espId)}`, mountpoint: "/boot/efi", type: "vfat", options: "umask=0077,nofail", pass: 1 },
    ...extras.map((e) => ({ spec: `UUID=${e.uuid}`, mountpoint: e.mountpoint, type: "ext4", options: "defaults,nofail", pass: 2 })),
  ]));
  const grubDir = path.join(staging, "boot/grub");
  await mkdir(path.join(grubDir, "i386-pc"), { recursive: true });
  const title = `${o.name} (${o.flavor}, ${version})`;
  await writeFile(path.join(grubDir, "grub.cfg"), diskGrubCfg({ title, rootUuid, kernelVersion: version, cmdline: o.cmdline }));
  // grub-install copies these too: normal mode reads the .lst files, and `insmod` finds any module.
  for (const f of await readdir(GRUB_I386_PC)) {
    if (f.endsWith(".mod") || f.endsWith(".lst")) await copyFile(path.join(GRUB_I386_PC, f), path.join(grubDir, "i386-pc", f));
  }

  if (ctx.epoch !== undefined) await clampTimes(staging, ctx.epoch);

  await using scope = new Scope();
  const tree = scope.use(await mountOverlay(path.join(work, "tree"), { lower: [staging, ctx.root] }, { log: ctx.log, workDir: ctx.workDir }));

  // 2. Layout and file systems.
  const used = Number((await ctx.exec(["du", "-s", "-B1", tree.path], { captureStdout: true, quietStdout: true })).stdout.split(/\s/)[0]);
  const files = Number((await ctx.exec(["du", "-s", "--inodes", tree.path], { captureStdout: true, quietStdout: true })).stdout.split(/\s/)[0]);
  const layout = planDiskLayout({
    rootNeeds: rootSizeFor(used),
    diskSize: o.size === undefined ? undefined : recipeSize(o.size),
    extras: extras.map((e) => ({ name: e.name, size: e.bytes, mountpoint: e.mountpoint })),
  });
  ctx.log.line(`disk: ${Math.round(layout.size / MIB)} MiB; root ${Math.round(part(layout, "root").size / MIB)} MiB for ${Math.round(used / MIB)} MiB in ${files} files`);
  const raw = path.join(work, "disk.raw");
  await (await open(raw, "w")).close();
  await truncate(raw, layout.size); // sparse: only what mkfs and GRUB write takes space
  const guids = { disk: derivedUuid(ctx.ids, "gpt"), partitions: Object.fromEntries(layout.partitions.map((p) => [p.name, derivedUuid(ctx.ids, `gpt:${p.name}`)])) };
  await ctx.exec(["sfdisk", "--no-reread", "--no-tell-kernel", "--quiet", raw], { input: sfdiskScript(layout, guids) });

  const root = part(layout, "root");
  // One inode per 16 KiB is mke2fs' default; a root of many small files may need more.
  const inodes = Math.max(Math.ceil(files * 1.5) + 4096, Math.floor(root.size / 16384));
  const e2env = ctx.epoch === undefined ? {} : { E2FSPROGS_FAKE_TIME: String(ctx.epoch) };
  const hashSeed = (name: string) => (ctx.ids ? `,hash_seed=${derivedUuid(ctx.ids, `hash-seed:${name}`)}` : "");
  // prettier-ignore
  await ctx.exec(["mkfs.ext4", "-q", "-F", "-t", "ext4", "-b", "4096", "-N", String(inodes), "-L", "root", "-U", rootUuid,
                  "-E", `offset=${root.start},nodiscard${hashSeed("root")}`, "-d", tree.path, raw, `${root.size / 1024}k`], { env: e2env });
  if (ctx.epoch !== undefined) await settleInodeTimes(ctx, tree.path, `${raw}?offset=${root.start}`, ctx.epoch, work);
  await scope.release(); // the tree is in the file system now
  for (const e of extras) {
    const p = part(layout, e.name);
    // prettier-ignore
    await ctx.exec(["mkfs.ext4", "-q", "-F", "-t", "ext4", "-b", "4096", "-L", e.name, "-U", e.uuid,
                    "-E", `offset=${p.start},nodiscard${hashSeed(e.name)}`, raw, `${p.size / 1024}k`], { env: e2env });
  }

  const esp = part(layout, "esp");
  await writeFatImage(ctx.exec, {
    file: raw,
    offsetSectors: esp.start / 512,
    sizeKiB: ESP_SIZE / 1024,
    label: "EFI",
    volumeId: espId,
    fat32: true,
    invariant: ctx.ids !== undefined,
    dirs: ["/EFI", "/EFI/BOOT", "/EFI/debian"],
    files: [...efiBootFiles(EFI_FILES.grubDisk), { from: await writeTemp(work, "esp-grub.cfg", espStubCfg(rootUuid)), to: "/EFI/debian/grub.cfg" }],
  });

  // 3. GRUB for BIOS: core.img in the BIOS boot partition, boot.img in the MBR.
  const bios = part(layout, "bios");
  const coreFile = path.join(work, "core.img");
  const early = `search --no-floppy --fs-uuid --set=root ${rootUuid}\nset prefix=($root)/boot/grub\n`;
  await makeBiosCore(ctx.exec, { out: coreFile, early, earlyFile: path.join(work, "early.cfg"), cdrom: false });
  const fh = await open(raw, "r+");
  try {
    const mbr = Buffer.alloc(512);
    await fh.read(mbr, 0, 512, 0);
    const sectors = await biosBootSectors(mbr, coreFile, bios.start / 512);
    if (sectors.core.length > bios.size) throw new KilnError("STAGE_FAILED", `qcow2: GRUB's core image (${sectors.core.length} bytes) does not fit the BIOS boot partition`);
    await fh.write(sectors.mbr, 0, 512, 0);
    await fh.write(sectors.core, 0, sectors.core.length, bios.start);
  } finally {
    await fh.close();
  }
  await ctx.exec(["sfdisk", "--verify", raw]);

  // 4. qcow2.
  const out = path.join(ctx.outputs, QCOW2_FILE);
  const compression = o.compression === "none" ? [] : ["-c", ...(o.compression === "zstd" ? ["-o", "compression_type=zstd"] : [])];
  await ctx.exec(["qemu-img", "convert", "-p", "-f", "raw", "-O", "qcow2", ...compression, raw, out], {
    onLine: (line) => {
      const m = /\((\d+(?:\.\d+)?)\/100%\)/.exec(line);
      if (m) ctx.progress(Number(m[1]) / 100);
      return m !== null;
    },
  });
  Object.assign(ctx.facts, { kernelVersion: version, rootUuid, espUuid: fatUuid(espId), diskBytes: layout.size, rootBytes: root.size });
}

/**
 * `mkfs.ext4 -d` copies each source entry's ctime and atime, which are the times of this build
 * (no call can set a ctime): debugfs sets both to the epoch, entry by entry, by path. A name
 * debugfs cannot be given (a double quote or a line break in it) is left as it is and named in
 * the log: that disk is then not reproducible.
 */
async function settleInodeTimes(ctx: ArtifactContext, tree: string, fs: string, epoch: number, work: string): Promise<void> {
  const lines: string[] = [];
  const odd: string[] = [];
  const visit = async (rel: string): Promise<void> => {
    if (/["\n\r]/.test(rel)) {
      odd.push(JSON.stringify(rel));
      return;
    }
    lines.push(`sif "${rel}" ctime @${epoch}`, `sif "${rel}" atime @${epoch}`);
    const st = await lstat(path.join(tree, rel));
    if (st.isDirectory()) for (const n of (await readdir(path.join(tree, rel))).sort()) await visit(path.posix.join(rel, n));
  };
  await visit("/");
  lines.push(`sif "/lost+found" ctime @${epoch}`, `sif "/lost+found" atime @${epoch}`);
  const script = await writeTemp(work, "inode-times.debugfs", lines.join("\n") + "\n");
  await ctx.exec(["debugfs", "-w", "-f", script, fs], { env: { E2FSPROGS_FAKE_TIME: String(epoch) }, captureStdout: true, quietStdout: true });
  if (odd.length) ctx.log.line(`qcow2: left the ctime of ${odd.length} entries whose names debugfs cannot take: ${odd.slice(0, 5).join(", ")}`);
}

/** A partition by name: bios, esp, root (names extra partitions may not take), or an extra's. */
function part(layout: DiskLayout, name: string) {
  const p = layout.partitions.find((x) => x.name === name);
  if (!p) throw new Error(`qcow2: no partition ${name}`);
  return p;
}

async function writeTemp(dir: string, name: string, text: string): Promise<string> {
  const file = path.join(dir, name);
  await writeFile(file, text);
  return file;
}

/** The one kernel in the flavor's layer: /boot/vmlinuz-<version> with its initrd. */
export async function kernelVersionIn(root: string, flavor: string): Promise<string> {
  const boot = await resolveInRoot(root, "/boot");
  const names = await readdir(boot).catch(() => [] as string[]);
  const versions = names
    .filter((n) => n.startsWith("vmlinuz-") && names.includes(`initrd.img-${n.slice(8)}`))
    .map((n) => n.slice(8))
    .sort((a, b) => b.localeCompare(a, "en", { numeric: true }));
  if (versions.length === 0) throw new KilnError("STAGE_FAILED", `qcow2: flavor ${flavor} has no /boot/vmlinuz-* with an initrd`);
  return versions[0]!;
}

/** A mount point for an extra partition must not hide files of the image. */
async function checkMountpoint(root: string, mountpoint: string, name: string): Promise<void> {
  const dir = await resolveInRoot(root, mountpoint);
  const entries = await readdir(dir).catch(() => [] as string[]);
  if (entries.length > 0) {
    throw new KilnError("STAGE_FAILED", `disk.partitions: ${name} would be mounted on ${mountpoint}, which holds files in the image (${entries.slice(0, 3).join(", ")}…)`, {
      hint: "pick an empty or new directory as its mountpoint",
    });
  }
}

interface FstabLine {
  spec: string;
  mountpoint: string;
  type: string;
  options: string;
  pass: number;
}

/** The image's fstab without entries for the disk's own mount points, plus the disk's entries by UUID. */
async function fstab(root: string, ours: FstabLine[]): Promise<string> {
  const existing = await readFile(await resolveInRoot(root, "/etc/fstab"), "utf8").catch(() => "");
  const taken = new Set(ours.map((l) => l.mountpoint));
  const kept = existing.split("\n").filter((l) => {
    const f = l.trim().split(/\s+/);
    return l.trim() !== "" && !l.trim().startsWith("#") && !taken.has(f[1] ?? "");
  });
  return [
    "# Written by Kiln for the qcow2 disk: file systems by UUID.",
    "# <file system>\t<mount point>\t<type>\t<options>\t<dump>\t<pass>",
    ...ours.map((l) => `${l.spec}\t${l.mountpoint}\t${l.type}\t${l.options}\t0\t${l.pass}`),
    ...kept,
    "",
  ].join("\n");
}
