/**
 * Fills an empty directory with the root tree of an image, keeping everything a root needs:
 * owners (numeric), modes with setuid bits, xattrs (file capabilities live there), hard links,
 * device nodes, and symlinks exactly as they are. One path per format:
 *
 *   squashfs  unsquashfs straight into the directory;
 *   tar       safety scan (tar-safety.ts), then GNU tar extracts;
 *   raw       mount the root filesystem read-only (loop, offset/sizelimit for a partition) and
 *             copy it out with cp -a;
 *   qcow2     check it is self-contained, convert to raw in the work dir, then raw.
 *
 * Mounts go through src/host/mount.ts (auto-clearing loop devices, never bare losetup, never
 * partition scanning: `losetup -P` does not create loopXpN reliably on our kernels, so a
 * partition is reached by offset) and are held in a Scope, so they are released on success,
 * failure and cancel alike.
 */
import { availableParallelism } from "node:os";
import { mkdtemp, open, readdir, stat } from "node:fs/promises";
import path from "node:path";
import { capture } from "../../host/exec.js";
import { mountImageFile } from "../../host/mount.js";
import { Scope } from "../../host/scope.js";
import { removeTree } from "../../host/workdir.js";
import { filesystemAt, identifyImage, readImageHead, unknownImageFormat, HEAD_BYTES, type ImageFormat, type RootFsType } from "./detect.js";
import { blameImage, execOnImage, invalidImage, TailLog, type ImportContext } from "./input-errors.js";
import { chooseRootPartition, describePartitionType, parseSfdiskJson } from "./partitions.js";
import { scanTarball } from "./tar-safety.js";

export type { ImportContext } from "./input-errors.js";

/**
 * Extracts `image` (named as the recipe names it; relative paths resolve against the process's
 * cwd) into `destDir`, which must exist and be empty. `format` is what the recipe says; "auto"
 * detects it. A declared format the bytes contradict is refused rather than half-tried. Scratch
 * files and mount points live in a fresh directory under `ctx.workDir` and are removed before
 * returning. On failure `destDir` may hold part of a tree: the caller discards it.
 */
export async function extractImage(image: string, format: ImageFormat | "auto", destDir: string, ctx: ImportContext): Promise<void> {
  const started = Date.now();
  const file = path.resolve(image); // tools never see a name starting with "-" this way
  await assertEmptyDir(destDir);
  const head = await readImageHead(file, image);
  const seen = identifyImage(head, image);
  if (format === "auto") {
    if (!seen) throw unknownImageFormat(image, head);
    format = seen.format;
  } else if (seen && seen.format !== format) {
    throw invalidImage(image, `base.format says "${format}" but the file is a ${seen.what}; set format to "${seen.format}" or "auto"`);
  }
  const before = await stat(file);
  ctx.log.line(`import ${image}: ${seen?.what ?? `${format} (declared; not recognised by its first bytes)`}, ${mib(before.size)}`);

  await using scope = new Scope();
  const scratch = await mkdtemp(path.join(ctx.workDir, "import-"));
  // removeTree refuses to delete while anything under it is still mounted.
  scope.defer(() => removeTree(scratch, ctx.log));

  switch (format) {
    case "squashfs":
      await extractSquashfs(file, image, head, before.size, destDir, ctx);
      break;
    case "tar":
      await scanTarball(file, image, scratch, ctx);
      await extractTar(file, image, destDir, ctx);
      break;
    case "raw":
      await extractRaw(file, image, destDir, scratch, ctx);
      break;
    case "qcow2":
      await extractQcow2(file, image, destDir, scratch, ctx);
      break;
  }

  // The scan and the extraction read the file twice (tar) and a copy could be mid-write:
  // refuse a file that changed under us rather than import a mix of two versions.
  const after = await stat(file);
  if (after.size !== before.size || after.mtimeMs !== before.mtimeMs || after.ino !== before.ino) {
    throw invalidImage(image, "changed while it was being imported; retry once nothing is writing to it");
  }
  ctx.log.line(`import ${image}: extracted in ${((Date.now() - started) / 1000).toFixed(1)} s`);
}

async function assertEmptyDir(dir: string): Promise<void> {
  const entries = await readdir(dir); // throws ENOENT/ENOTDIR: a caller bug, not user input
  if (entries.length > 0) throw new Error(`extractImage: ${dir} is not empty (${entries.slice(0, 3).join(", ")} …)`);
}

// ---------------------------------------------------------------------------------------------
// squashfs

async function extractSquashfs(file: string, label: string, head: Buffer, size: number, dest: string, ctx: ImportContext): Promise<void> {
  // Superblock: bytes_used (u64 LE) at offset 40 is the filesystem's length. A file shorter than
  // that was cut off in transfer; say so plainly instead of quoting unsquashfs' read errors.
  if (head.length >= 48) {
    const used = head.readBigUInt64LE(40);
    if (used > BigInt(size)) {
      throw invalidImage(label, `is truncated: its superblock says the filesystem is ${used} bytes, the file has ${size}; download or copy it again`);
    }
  }
  // prettier-ignore
  await execOnImage(
    ["unsquashfs", "-no-progress", "-force", "-dest", dest, "-processors", String(availableParallelism()),
     "-xattrs", file],
    ctx,
    { label, doing: "unsquashfs could not read it" },
  );
}

// ---------------------------------------------------------------------------------------------
// tar

async function extractTar(file: string, label: string, dest: string, ctx: ImportContext): Promise<void> {
  // As root, tar restores owners by default; -p keeps modes as stored (no umask), setuid bits
  // included. --xattrs alone restores only user.*: --xattrs-include='*' brings security.capability
  // (ping's cap_net_raw) and trusted.*. --force-local: a name with ":" is a file, not host:path.
  // prettier-ignore
  await execOnImage(
    ["tar", "--extract", "--file", file, "--force-local", "--directory", dest, "--preserve-permissions",
     "--same-owner", "--numeric-owner", "--xattrs", "--xattrs-include=*", "--acls"],
    ctx,
    { label, doing: "tar could not extract it" },
  );
}

// ---------------------------------------------------------------------------------------------
// qcow2

interface QemuImgInfo {
  format?: string;
  "virtual-size"?: number;
  "backing-filename"?: string;
  encrypted?: boolean;
  "format-specific"?: { type?: string; data?: { "data-file"?: string; encrypt?: unknown } };
}

async function extractQcow2(file: string, label: string, dest: string, scratch: string, ctx: ImportContext): Promise<void> {
  // -f qcow2: never let qemu-img guess (a guessed format is how a raw file gets read as qcow2).
  const { stdout } = await execOnImage(
    ["qemu-img", "info", "--output=json", "-f", "qcow2", file],
    ctx,
    { label, doing: "qemu-img cannot read it as a qcow2 image" },
    { captureStdout: true, quietStdout: true },
  );
  const info = JSON.parse(stdout) as QemuImgInfo;
  const backing = info["backing-filename"];
  if (backing) {
    // The backing file holds part of the root, but it is not in the recipe: its contents would be
    // missing from the cache key, and a build worker may not have it at the recorded path.
    throw invalidImage(
      label,
      `is a qcow2 overlay on the backing file ${JSON.stringify(backing)}; Kiln imports self-contained images only, because a backing file is not one of the recipe's inputs (its contents would not count in the cache key, and other build hosts may not have it). Flatten it first: qemu-img convert -O qcow2 ${label} flat.qcow2`,
    );
  }
  const dataFile = info["format-specific"]?.data?.["data-file"];
  if (dataFile) {
    throw invalidImage(label, `keeps its data in the external file ${JSON.stringify(dataFile)}; Kiln imports self-contained images only. Flatten it first: qemu-img convert -O qcow2 ${label} flat.qcow2`);
  }
  if (info.encrypted || info["format-specific"]?.data?.encrypt) throw invalidImage(label, "is an encrypted qcow2 image; decrypt it first (qemu-img convert with --object secret)");
  ctx.log.line(`qcow2: virtual size ${mib(info["virtual-size"] ?? 0)}, self-contained; converting to raw`);

  // qemu-img writes the raw file sparse, so it costs the data, not the virtual size.
  const raw = path.join(scratch, "disk.raw");
  await execOnImage(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", file, raw], ctx, { label, doing: "qemu-img could not convert it to raw" });
  await extractRaw(raw, label, dest, scratch, ctx);
}

// ---------------------------------------------------------------------------------------------
// raw

interface RootLocation {
  offset: number;
  sizeLimit?: number;
  fs: RootFsType;
  what: string;
}

/** Mount options that keep a read-only mount from writing: no journal or log replay. */
const READ_ONLY_OPTIONS: Record<RootFsType, string[]> = {
  // noload: a dirty ext3/4 journal (an image taken from a running VM) is not replayed. With "ro"
  // alone the kernel wants to replay it: on our read-only loop device the mount fails ("cannot
  // mount /dev/loopN read-only", measured), on a writable one it would write into the image.
  ext4: ["noload"],
  // norecovery: the same for the xfs log; nouuid: an image of a host already mounted has its UUID.
  xfs: ["norecovery", "nouuid"],
  btrfs: ["rescue=nologreplay"],
};

async function extractRaw(file: string, label: string, dest: string, scratch: string, ctx: ImportContext): Promise<void> {
  const root = await locateRoot(file, label, ctx);
  ctx.log.line(`raw: root is ${root.what}`);

  await using scope = new Scope();
  const target = path.join(scratch, "root");
  const tail = new TailLog(ctx.log);
  try {
    // prettier-ignore
    scope.use(await mountImageFile(file, target, {
      fstype: root.fs, offset: root.offset, sizeLimit: root.sizeLimit, extra: READ_ONLY_OPTIONS[root.fs],
      log: tail, workDir: ctx.workDir,
    }));
  } catch (e) {
    throw blameImage(e, tail, { label, doing: `${root.what} could not be mounted read-only` });
  }
  // cp -a is -dR --preserve=all: owners, modes, timestamps, hard links within the tree, device
  // nodes, symlinks as symlinks. Naming xattr explicitly makes a failure to copy one an error
  // (under "all" alone cp ignores it), since a lost security.capability breaks ping silently.
  // "MNT/." copies the root directory's own mode and owner onto dest too.
  await execOnImage(
    ["cp", "-a", "--preserve=xattr", "--no-target-directory", `${target}/.`, dest],
    ctx,
    { label, doing: `copying the root out of ${root.what} failed` },
  );
}

/** Where the root filesystem is: the whole file, or a partition chosen by partitions.ts. */
async function locateRoot(file: string, label: string, ctx: ImportContext): Promise<RootLocation> {
  const head = await readImageHead(file, label);
  const size = (await stat(file)).size;
  const bare = filesystemAt(head, 0);
  if (bare) return { offset: 0, fs: bare, what: `the bare ${bare === "ext4" ? "ext2/3/4" : bare} filesystem` };

  const out = await capture(["sfdisk", "--json", file], { log: ctx.log, signal: ctx.signal, workDir: ctx.workDir, okCodes: [0, 1] });
  if (out === "") throw invalidImage(label, "holds neither a partition table nor an ext2/3/4, xfs or btrfs filesystem");
  const table = parseSfdiskJson(out);

  const fsByNumber = new Map<number, RootFsType | undefined>();
  for (const p of table.partitions) {
    fsByNumber.set(p.number, p.start + 2048 <= size ? filesystemAt(await readAt(file, p.start, HEAD_BYTES), 0) : undefined);
  }
  const choice = chooseRootPartition(table, (p) => fsByNumber.get(p.number));
  if ("error" in choice) throw invalidImage(label, choice.error);
  const p = choice.partition;
  if (p.start + p.size > size) {
    throw invalidImage(label, `is truncated: partition ${p.number} ends at byte ${p.start + p.size}, the file has ${size} bytes`);
  }
  const what = `partition ${p.number} (${describePartitionType(p.type)}, ${choice.fs}, ${mib(p.size)} at offset ${p.start})`;
  ctx.log.line(`raw: ${table.label} partition table: ${table.partitions.map((q) => `${q.number} ${describePartitionType(q.type)} ${mib(q.size)}`).join("; ")}`);
  ctx.log.line(`raw: using partition ${p.number}: ${choice.rule}`);
  return { offset: p.start, sizeLimit: p.size, fs: choice.fs, what };
}

async function readAt(file: string, offset: number, length: number): Promise<Buffer> {
  const fh = await open(file, "r");
  try {
    const buf = Buffer.alloc(length);
    const { bytesRead } = await fh.read(buf, 0, length, offset);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

function mib(bytes: number): string {
  return bytes >= 1024 * 1024 * 1024 ? `${(bytes / 1024 ** 3).toFixed(1)} GiB` : `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
}
