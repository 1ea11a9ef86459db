// Image format detection by magic bytes, on tiny synthetic files.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, mkdir, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { gzipSync } from "node:zlib";
import { detectImageFormat } from "../../src/stages/import-image.js";
import { KilnError } from "../../src/errors.js";
import { writeTar } from "../helpers/tar-writer.js";

let dir: string;
before(async () => {
  dir = await mkdtemp("/var/tmp/kiln-detect-");
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A zero-filled file of `size` bytes with `bytes` written at `offset`. */
async function fileWith(name: string, size: number, ...patches: Array<[number, string | number[]]>): Promise<string> {
  const buf = Buffer.alloc(size);
  for (const [offset, bytes] of patches) {
    if (typeof bytes === "string") buf.write(bytes, offset, "latin1");
    else Buffer.from(bytes).copy(buf, offset);
  }
  const p = path.join(dir, name);
  await writeFile(p, buf);
  return p;
}

function isInvalid(pattern: RegExp) {
  return (e: unknown) => {
    assert.ok(e instanceof KilnError, `expected a KilnError, got ${String(e)}`);
    assert.equal(e.code, "INPUT_INVALID");
    assert.equal(e.exitCode, 2);
    assert.match(e.message, pattern);
    return true;
  };
}

const formats: Array<[string, () => Promise<string>, string]> = [
  ["squashfs (hsqs)", () => fileWith("a.squashfs", 4096, [0, "hsqs"]), "squashfs"],
  ["qcow2 (QFI\\xfb)", () => fileWith("a.qcow2", 4096, [0, "QFI\xfb"]), "qcow2"],
  ["POSIX tar (ustar at 257)", () => fileWith("a.tar", 1024, [0, "etc/"], [257, "ustar\x0000"]), "tar"],
  ["GNU tar (ustar  at 257)", () => fileWith("b.tar", 1024, [0, "etc/"], [257, "ustar  \0"]), "tar"],
  ["gzip tarball", async () => { const p = path.join(dir, "c.tar.gz"); await writeFile(p, gzipSync(writeTar([{ name: "etc/", type: "dir" }]))); return p; }, "tar"],
  ["xz tarball", () => fileWith("d.tar.xz", 64, [0, [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]]), "tar"],
  ["zstd tarball", () => fileWith("e.tar.zst", 64, [0, [0x28, 0xb5, 0x2f, 0xfd]]), "tar"],
  ["bzip2 tarball", () => fileWith("f.tar.bz2", 64, [0, "BZh9"]), "tar"],
  ["MBR disk (55 AA at 510)", () => fileWith("mbr.img", 4096, [510, [0x55, 0xaa]]), "raw"],
  ["GPT disk (EFI PART at 512)", () => fileWith("gpt.img", 4096, [510, [0x55, 0xaa]], [512, "EFI PART"]), "raw"],
  ["bare ext4 (EF53 at 1080)", () => fileWith("root.ext4", 4096, [1080, [0x53, 0xef]]), "raw"],
  ["bare xfs (XFSB)", () => fileWith("root.xfs", 4096, [0, "XFSB"]), "raw"],
  ["bare btrfs (_BHRfS_M at 64 KiB + 64)", () => fileWith("root.btrfs", 70000, [0x10040, "_BHRfS_M"]), "raw"],
];

for (const [what, make, expected] of formats) {
  void test(`detects ${what} as ${expected}`, async () => {
    assert.equal(await detectImageFormat(await make()), expected);
  });
}

void test("the name does not matter, only the bytes", async () => {
  assert.equal(await detectImageFormat(await fileWith("looks-like.qcow2", 4096, [0, "hsqs"])), "squashfs");
});

void test("unknown bytes are INPUT_INVALID showing the first bytes", async () => {
  const p = path.join(dir, "garbage.img");
  await writeFile(p, "GARBAGE, not an image\n".repeat(100));
  await assert.rejects(
    detectImageFormat(p),
    isInvalid(/^base\.image: .*garbage\.img is not a squashfs, qcow2, raw disk\/filesystem or tar archive \(first bytes: 47 41 52 42 41 47 45 2c .* "GARBAGE, not an "\)$/),
  );
});

void test("an empty file, a directory, a missing file are clear INPUT_INVALIDs", async () => {
  const empty = path.join(dir, "empty.img");
  await writeFile(empty, "");
  await assert.rejects(detectImageFormat(empty), isInvalid(/empty\.img is empty$/));
  const sub = path.join(dir, "a-dir");
  await mkdir(sub);
  await assert.rejects(detectImageFormat(sub), isInvalid(/a-dir is a directory; base\.image must be an image file/));
  await assert.rejects(detectImageFormat(path.join(dir, "nope.img")), isInvalid(/nope\.img does not exist$/));
  await assert.rejects(detectImageFormat(path.join(empty, "x")), isInvalid(/does not exist \(a component of the path is not a directory\)/));
});

void test("a gzip-compressed disk image is refused with advice, not taken for a tarball", async () => {
  const disk = Buffer.alloc(8192);
  disk.write("EFI PART", 512, "latin1");
  const p = path.join(dir, "root-image.gz");
  await writeFile(p, gzipSync(disk));
  await assert.rejects(detectImageFormat(p), isInvalid(/is a gzip-compressed raw disk or filesystem image; .*decompress it first/));
});

void test("an ISO is refused with a pointer to the squashfs inside", async () => {
  const p = await fileWith("live.iso", 40000, [510, [0x55, 0xaa]], [0x8001, "CD001"]);
  await assert.rejects(detectImageFormat(p), isInvalid(/is an ISO 9660 image.*filesystem\.squashfs/));
});
