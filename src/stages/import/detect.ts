/**
 * Which kind of image a base image file is, from its magic bytes (never from its name: cloud
 * images come as `.img` whether they are qcow2, raw or squashfs). maas-images asks `file(1)` and
 * falls back on names (its bin/maas-cloudimg2eph2); Kiln reads the same signatures itself, so
 * the answer does not depend on the host's libmagic, and says what it saw when it cannot tell.
 *
 * Every problem with the file itself (missing, a directory, empty, unknown) is INPUT_INVALID:
 * the user names the file in the recipe, so it is the user's to fix.
 */
import { open, stat } from "node:fs/promises";
import { gunzipSync, constants as zlibConstants } from "node:zlib";
import { KilnError } from "../../errors.js";

export type ImageFormat = "squashfs" | "qcow2" | "raw" | "tar";

/** Filesystems Kiln can mount as a root read-only (the kernels we run on all have them). */
export type RootFsType = "ext4" | "xfs" | "btrfs";

/** What the first bytes say: the format, and a few words for logs and errors. */
export interface Identified {
  format: ImageFormat;
  what: string;
}

/** Enough to see every signature below; btrfs keeps its superblock at 64 KiB. */
export const HEAD_BYTES = 64 * 1024 + 4096;

const BTRFS_SUPER = 0x10000;

/**
 * Reads the image's first bytes, turning every way a path can be unusable into a sentence.
 * `label` is how the file is named in messages (the recipe's spelling).
 */
export async function readImageHead(file: string, label = file, length = HEAD_BYTES): Promise<Buffer> {
  const fail = (why: string) => new KilnError("INPUT_INVALID", `base.image: ${label} ${why}`, { problems: [{ path: "base.image", message: `${label} ${why}` }] });
  let size: number;
  try {
    const st = await stat(file);
    if (st.isDirectory()) throw fail("is a directory; base.image must be an image file (squashfs, qcow2, raw disk/filesystem or tar archive)");
    if (!st.isFile()) throw fail("is not a regular file (a device, socket or pipe); copy the image into a file first");
    size = st.size;
  } catch (e) {
    if (e instanceof KilnError) throw e;
    throw fail(describeFsError(e));
  }
  if (size === 0) throw fail("is empty");
  try {
    const fh = await open(file, "r");
    try {
      const buf = Buffer.alloc(Math.min(length, size));
      const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
      return buf.subarray(0, bytesRead);
    } finally {
      await fh.close();
    }
  } catch (e) {
    throw fail(describeFsError(e));
  }
}

function describeFsError(e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code;
  switch (code) {
    case "ENOENT":
      return "does not exist";
    case "ENOTDIR":
      return "does not exist (a component of the path is not a directory)";
    case "EACCES":
    case "EPERM":
      return "cannot be read: permission denied";
    case "EISDIR":
      return "is a directory; base.image must be an image file";
    default:
      return `cannot be read: ${(e as Error).message}`;
  }
}

/** Finds the image format of a file by its magic bytes; unknown or unusable files are INPUT_INVALID. */
export async function detectImageFormat(path: string): Promise<ImageFormat> {
  const head = await readImageHead(path);
  const found = identifyImage(head, path);
  if (found) return found.format;
  throw unknownImageFormat(path, head);
}

export function unknownImageFormat(label: string, head: Buffer): KilnError {
  return new KilnError(
    "INPUT_INVALID",
    `base.image: ${label} is not a squashfs, qcow2, raw disk/filesystem or tar archive (first bytes: ${describeBytes(head)})`,
    { problems: [{ path: "base.image", message: `${label}: unknown image format` }] },
  );
}

/**
 * The format the bytes show, or undefined. Throws INPUT_INVALID for formats we recognise but do
 * not import (an ISO, a gzip-compressed disk), since a pointed message beats "unknown".
 */
export function identifyImage(head: Buffer, label: string): Identified | undefined {
  if (at(head, 0, "QFI\xfb")) return { format: "qcow2", what: "qcow2 image" };
  if (at(head, 0, "hsqs")) return { format: "squashfs", what: "squashfs image" };
  if (isUstar(head)) return { format: "tar", what: "tar archive" };
  const compressor = compressionOf(head);
  if (compressor) {
    if (compressor === "gzip") checkGzipPayload(head, label);
    return { format: "tar", what: `${compressor}-compressed tar archive` };
  }
  // Before the partition tables: hybrid ISOs carry an MBR and often a GPT too.
  if (at(head, 0x8001, "CD001")) {
    throw new KilnError(
      "INPUT_INVALID",
      `base.image: ${label} is an ISO 9660 image, which Kiln does not import; import the root squashfs inside it instead (live images keep it as live/filesystem.squashfs or casper/filesystem.squashfs)`,
      { problems: [{ path: "base.image", message: `${label}: ISO images are not imported` }] },
    );
  }
  if (at(head, 512, "EFI PART")) return { format: "raw", what: "GPT-partitioned disk" };
  const fs = filesystemAt(head, 0);
  if (fs) return { format: "raw", what: `bare ${fs === "ext4" ? "ext2/3/4" : fs} filesystem` };
  if (head.length >= 512 && head[510] === 0x55 && head[511] === 0xaa) return { format: "raw", what: "MBR-partitioned disk" };
  return undefined;
}

/** The mountable root filesystem whose superblock starts at `offset` within `head`, if any. */
export function filesystemAt(head: Buffer, offset: number): RootFsType | undefined {
  // ext2/3/4: s_magic 0xEF53 (little endian) at byte 56 of the superblock, which sits at 1024.
  if (head.length >= offset + 1082 && head[offset + 1080] === 0x53 && head[offset + 1081] === 0xef) return "ext4";
  if (at(head, offset, "XFSB")) return "xfs";
  if (at(head, offset + BTRFS_SUPER + 0x40, "_BHRfS_M")) return "btrfs";
  return undefined;
}

function isUstar(head: Buffer): boolean {
  // POSIX "ustar\0" and old GNU "ustar  \0" both start with these five bytes.
  return at(head, 257, "ustar");
}

type Compressor = "gzip" | "bzip2" | "xz" | "zstd";

export function compressionOf(head: Buffer): Compressor | undefined {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return "gzip";
  if (at(head, 0, "BZh") && head.length >= 4 && head[3]! >= 0x31 && head[3]! <= 0x39) return "bzip2";
  if (at(head, 0, "\xfd7zXZ\x00")) return "xz";
  if (at(head, 0, "\x28\xb5\x2f\xfd")) return "zstd";
  return undefined;
}

/**
 * A gzip file is taken for a compressed tarball, but MAAS and cloud mirrors also ship gzipped disk
 * images (root-image.gz). zlib is built in, so we look inside the first bytes and say so early
 * instead of letting tar fail with "This does not look like a tar archive". xz, zstd and bzip2
 * would need a child process for this; tar's own error covers them.
 */
function checkGzipPayload(head: Buffer, label: string): void {
  let inner: Buffer;
  try {
    inner = gunzipSync(head, { finishFlush: zlibConstants.Z_SYNC_FLUSH });
  } catch {
    return; // not decodable from the first bytes alone: let tar judge the whole file
  }
  if (isUstar(inner)) return;
  let what: string | undefined;
  if (at(inner, 0, "hsqs")) what = "squashfs image";
  else if (at(inner, 0, "QFI\xfb")) what = "qcow2 image";
  else if (at(inner, 512, "EFI PART") || filesystemAt(inner, 0) || (inner.length >= 512 && inner[510] === 0x55 && inner[511] === 0xaa)) what = "raw disk or filesystem image";
  if (what) {
    throw new KilnError(
      "INPUT_INVALID",
      `base.image: ${label} is a gzip-compressed ${what}; Kiln reads compressed tar archives only, so decompress it first (gunzip -k ${label}) and point base.image at the result`,
      { problems: [{ path: "base.image", message: `${label}: compressed ${what}` }] },
    );
  }
}

function at(buf: Buffer, offset: number, magic: string): boolean {
  if (buf.length < offset + magic.length) return false;
  for (let i = 0; i < magic.length; i++) if (buf[offset + i] !== magic.charCodeAt(i)) return false;
  return true;
}

/** `47 41 52 42 … "GARB…"`: hex of the first 16 bytes and their printable reading. */
export function describeBytes(head: Buffer): string {
  const first = head.subarray(0, 16);
  const hex = [...first].map((b) => b.toString(16).padStart(2, "0")).join(" ");
  const text = [...first].map((b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : ".")).join("");
  return `${hex} ${JSON.stringify(text)}`;
}
