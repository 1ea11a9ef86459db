// Runs for real as root: one small root tree packed five ways (squashfs, bare ext4, GPT disk,
// qcow2, tar.gz) comes back out of extractImage identical — owners, modes, setuid, xattrs,
// capabilities, hard links, symlinks, device nodes — and broken or hostile images are refused
// as INPUT_INVALID. No mount or loop device outlives the test.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { chmod, chown, link, lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, symlink, writeFile } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import path from "node:path";
import { detectImageFormat, extractImage } from "../../src/stages/import-image.js";
import { KilnError } from "../../src/errors.js";
import { findTool } from "../../src/host/tools.js";
import { loopsUnder, mountsUnder } from "../helpers/host.js";
import { readTarXattrs, writeTar } from "../helpers/tar-writer.js";

const isRoot = process.getuid?.() === 0;
const MiB = 1024 * 1024;

let tmp: string;
let src: string;
let work: string;
const logLines: string[] = [];
const ctx = () => ({ log: { line: (l: string) => void logLines.push(l) }, workDir: work });
const images: Record<string, string> = {};
const timings: Record<string, number> = {};

function run(argv: string[], input?: Buffer): string {
  return execFileSync(argv[0]!, argv.slice(1), { input, encoding: "utf8", stdio: [input ? "pipe" : "ignore", "pipe", "pipe"] });
}

/** The fixture root: a little of everything a root filesystem holds. */
async function makeRootTree(root: string): Promise<void> {
  for (const d of ["etc", "usr/bin", "usr/lib", "dev", "run", "srv", "var/empty"]) await mkdir(path.join(root, d), { recursive: true });
  await mkdir(path.join(root, "tmp"));
  await chmod(path.join(root, "tmp"), 0o1777);
  await chmod(path.join(root, "var/empty"), 0o711);
  await writeFile(path.join(root, "etc/hostname"), "kiln\n");
  await writeFile(path.join(root, "etc/motd of the day"), "spaces in a name\n");
  await writeFile(path.join(root, "etc/new\nline"), "a newline in a name\n");
  await writeFile(path.join(root, "usr/lib/os-release"), 'ID=kiln\nPRETTY_NAME="Kiln test root"\n');
  await symlink("../usr/lib/os-release", path.join(root, "etc/os-release"));
  await symlink("/etc/alternatives/editor", path.join(root, "usr/bin/editor")); // absolute, dangling: normal
  // setuid root with a user xattr; made by GNU tar from a pax header because this host has no setfattr.
  run(["tar", "-xpf", "-", "-C", root, "--xattrs", "--xattrs-include=*"],
    writeTar([{ name: "usr/bin/tool", type: "file", content: "#!/bin/sh\necho tool\n", mode: 0o4755, xattrs: { "user.kiln": "1" } }]));
  await link(path.join(root, "usr/bin/tool"), path.join(root, "usr/bin/tool-again"));
  await writeFile(path.join(root, "usr/bin/ping"), "#!/bin/sh\n");
  await chmod(path.join(root, "usr/bin/ping"), 0o755);
  if (await findTool("setcap")) run(["setcap", "cap_net_raw+ep", path.join(root, "usr/bin/ping")]);
  run(["mknod", "-m", "666", path.join(root, "dev/null"), "c", "1", "3"]);
  run(["mknod", "-m", "660", path.join(root, "dev/loop7"), "b", "7", "7"]);
  run(["mkfifo", "-m", "600", path.join(root, "run/initctl")]);
  await writeFile(path.join(root, "srv/owned"), "numeric owner, no passwd entry\n");
  await chown(path.join(root, "srv/owned"), 4242, 4343);
  await chmod(path.join(root, "srv/owned"), 0o640);
  await writeFile(path.join(root, "srv/random.bin"), randomBytes(256 * 1024));
}

interface Entry {
  type: string;
  mode: string;
  owner: string;
  sha256?: string;
  mtime?: number;
  target?: string;
  device?: string;
  hardlinks?: string[];
  xattrs?: Record<string, string>;
}

/** Everything about a tree that an import must keep, keyed by relative path. */
async function snapshot(root: string): Promise<Record<string, Entry>> {
  const out: Record<string, Entry> = {};
  const byInode = new Map<number, string[]>();
  async function visit(rel: string): Promise<void> {
    const abs = path.join(root, rel);
    const st = await lstat(abs);
    const e: Entry = { type: "?", mode: (st.mode & 0o7777).toString(8), owner: `${st.uid}:${st.gid}` };
    if (st.isDirectory()) e.type = "dir";
    else if (st.isFile()) {
      e.type = "file";
      e.sha256 = createHash("sha256").update(await readFile(abs)).digest("hex").slice(0, 16);
      e.mtime = Math.floor(st.mtimeMs / 1000);
      if (st.nlink > 1) byInode.set(st.ino, [...(byInode.get(st.ino) ?? []), rel]);
    } else if (st.isSymbolicLink()) {
      e.type = "symlink";
      e.target = await readlink(abs);
    } else if (st.isCharacterDevice() || st.isBlockDevice()) {
      e.type = st.isCharacterDevice() ? "char" : "block";
      e.device = `${Math.floor(st.rdev / 256) & 0xfff}:${st.rdev & 0xff}`;
    } else if (st.isFIFO()) e.type = "fifo";
    out[rel] = e;
    if (st.isDirectory()) {
      for (const name of (await readdir(abs)).sort()) {
        if (rel === "." && name === "lost+found") continue; // mkfs.ext4 makes one; not part of the tree
        await visit(rel === "." ? name : `${rel}/${name}`);
      }
    }
  }
  await visit(".");
  for (const group of byInode.values()) for (const p of group) out[p]!.hardlinks = [...group].sort();
  // xattrs as GNU tar reads them (getfattr is not installed here).
  const tar = execFileSync("tar", ["--xattrs", "--xattrs-include=*", "--format=posix", "--sort=name", "--exclude=./lost+found", "-cf", "-", "-C", root, "."], { maxBuffer: 256 * MiB });
  for (const [name, xattrs] of readTarXattrs(tar)) out[name === "." || name === "" ? "." : name]!.xattrs = xattrs;
  return out;
}

before(async () => {
  if (!isRoot) return;
  tmp = await mkdtemp("/var/tmp/kiln-import-");
  src = path.join(tmp, "src");
  work = path.join(tmp, "work");
  await mkdir(src);
  await mkdir(work);
  await makeRootTree(src);

  images.squashfs = path.join(tmp, "root.squashfs");
  run(["mksquashfs", src, images.squashfs, "-noappend", "-quiet", "-comp", "zstd", "-Xcompression-level", "3"]);

  images.ext4 = path.join(tmp, "root.ext4");
  run(["truncate", "-s", "32M", images.ext4]);
  run(["mkfs.ext4", "-q", "-F", "-d", src, images.ext4]);

  // GPT: BIOS boot, an ESP (no filesystem), a decoy "Linux filesystem" /boot with ext4, and the
  // root typed Linux root (x86-64) — which must win though it is not the first Linux partition.
  images.disk = path.join(tmp, "disk.raw");
  run(["truncate", "-s", "64M", images.disk]);
  run(["sfdisk", "-q", images.disk], Buffer.from([
    "label: gpt",
    "start=2048, size=2048, type=21686148-6449-6E6F-744E-656564454649",
    "size=8192, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
    "size=8192, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=boot",
    "size=98304, type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, name=root",
    "",
  ].join("\n")));
  const empty = path.join(tmp, "empty");
  await mkdir(empty);
  run(["mkfs.ext4", "-q", "-F", "-E", `offset=${12288 * 512}`, "-d", empty, images.disk, "4M"]);
  run(["mkfs.ext4", "-q", "-F", "-E", `offset=${20480 * 512}`, "-d", src, images.disk, "48M"]);

  // MBR: swap first, then the Linux (0x83) root.
  images.mbr = path.join(tmp, "mbr.raw");
  run(["truncate", "-s", "48M", images.mbr]);
  run(["sfdisk", "-q", images.mbr], Buffer.from("label: dos\nstart=2048, size=8192, type=82\nsize=77824, type=83\n"));
  run(["mkfs.ext4", "-q", "-F", "-E", `offset=${10240 * 512}`, "-d", src, images.mbr, "38M"]);

  images.qcow2 = path.join(tmp, "disk.qcow2");
  run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", images.disk, images.qcow2]);

  images.tar = path.join(tmp, "root.tar.gz");
  run(["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-czf", images.tar, "-C", src, "."]);
});

after(async () => {
  if (!tmp) return;
  if (Object.keys(timings).length > 0) console.log(`# extraction timings (s): ${JSON.stringify(timings)}`);
  for (const m of await mountsUnder(tmp)) execFileSync("umount", ["-l", m]); // only after a failure
  await rm(tmp, { recursive: true, force: true });
});

void test("the fixture tree has what the import must keep", { skip: !isRoot && "needs root" }, async () => {
  const s = await snapshot(src);
  assert.equal(s["usr/bin/tool"]!.mode, "4755");
  assert.deepEqual(s["usr/bin/tool"]!.xattrs, { "user.kiln": "1" });
  assert.deepEqual(s["usr/bin/tool"]!.hardlinks, ["usr/bin/tool", "usr/bin/tool-again"]);
  assert.equal(s["dev/null"]!.device, "1:3");
  assert.equal(s["dev/loop7"]!.type, "block");
  assert.equal(s["srv/owned"]!.owner, "4242:4343");
  assert.equal(s["tmp"]!.mode, "1777");
  assert.equal(s["usr/bin/editor"]!.target, "/etc/alternatives/editor");
  if (await findTool("setcap")) assert.ok(s["usr/bin/ping"]!.xattrs?.["security.capability"], "setcap left no capability");
});

const cases: Array<[string, string, "squashfs" | "raw" | "qcow2" | "tar"]> = [
  ["squashfs", "squashfs", "squashfs"],
  ["bare ext4 filesystem", "ext4", "raw"],
  ["GPT disk (root partition by type, by offset)", "disk", "raw"],
  ["MBR disk (swap, then the Linux partition)", "mbr", "raw"],
  ["qcow2 of the GPT disk", "qcow2", "qcow2"],
  ["gzip tarball", "tar", "tar"],
];

for (const [what, key, format] of cases) {
  void test(`${what}: detected as ${format} and extracted to the same tree`, { skip: !isRoot && "needs root" }, async () => {
    const image = images[key]!;
    assert.equal(await detectImageFormat(image), format);
    const dest = path.join(tmp, `out-${key}`);
    await mkdir(dest);
    const t0 = performance.now();
    await extractImage(image, format, dest, ctx());
    timings[key] = Number(((performance.now() - t0) / 1000).toFixed(2));
    assert.deepEqual(await snapshot(dest), await snapshot(src));
    assert.deepEqual(await readdir(work), [], "scratch left in the work dir");
    assert.deepEqual(await mountsUnder(tmp), []);
    assert.deepEqual(loopsUnder(tmp), []);
    await rm(dest, { recursive: true });
  });
}

function invalid(pattern: RegExp) {
  return (e: unknown) => {
    assert.ok(e instanceof KilnError, `not a KilnError: ${(e as Error)?.stack ?? String(e)}`);
    assert.equal(e.code, "INPUT_INVALID", e.message);
    assert.match(e.message, pattern);
    return true;
  };
}

async function freshDest(name: string): Promise<string> {
  const d = path.join(tmp, name);
  await mkdir(d);
  return d;
}

void test("an ext4 image with a dirty journal imports without replaying it (noload), and stays unchanged", { skip: !isRoot && "needs root" }, async () => {
  // A filesystem copied from a running VM is marked needs_recovery; a plain read-only mount would
  // refuse it ("cannot mount read-only") or, on a writable loop, replay the journal into the image.
  const dirty = path.join(tmp, "dirty.ext4");
  await writeFile(dirty, await readFile(images.ext4!));
  run(["debugfs", "-w", "-R", "feature needs_recovery", dirty]);
  const digest = async () => createHash("sha256").update(await readFile(dirty)).digest("hex");
  const before = await digest();
  const dest = await freshDest("out-dirty");
  await extractImage(dirty, "raw", dest, ctx());
  assert.deepEqual(await snapshot(dest), await snapshot(src));
  assert.equal(await digest(), before);
});

void test("a truncated squashfs is INPUT_INVALID naming the file", { skip: !isRoot && "needs root" }, async () => {
  const whole = await readFile(images.squashfs!);
  const half = path.join(tmp, "half.squashfs");
  await writeFile(half, whole.subarray(0, Math.floor(whole.length / 2)));
  const dest = await freshDest("out-half");
  await assert.rejects(extractImage(half, "auto", dest, ctx()), invalid(/^base\.image: .*half\.squashfs: is truncated: its superblock says the filesystem is \d+ bytes, the file has \d+/));
});

void test("a corrupt squashfs is INPUT_INVALID quoting unsquashfs", { skip: !isRoot && "needs root" }, async () => {
  const bytes = Buffer.from(await readFile(images.squashfs!));
  const inodeTable = Number(bytes.readBigUInt64LE(64));
  bytes.fill(0xff, inodeTable, inodeTable + 32);
  const bad = path.join(tmp, "corrupt.squashfs");
  await writeFile(bad, bytes);
  const dest = await freshDest("out-corrupt");
  await assert.rejects(extractImage(bad, "squashfs", dest, ctx()), invalid(/^base\.image: .*corrupt\.squashfs: unsquashfs could not read it: .*(failed to read|FATAL ERROR)/));
});

void test("a garbage file is INPUT_INVALID, for detection and for extraction", { skip: !isRoot && "needs root" }, async () => {
  const junk = path.join(tmp, "junk.img");
  await writeFile(junk, randomBytes(8192).fill(0x5a, 0, 16));
  await assert.rejects(detectImageFormat(junk), invalid(/junk\.img is not a squashfs, qcow2, raw disk\/filesystem or tar archive \(first bytes: 5a 5a/));
  await assert.rejects(extractImage(junk, "auto", await freshDest("out-junk"), ctx()), invalid(/is not a squashfs, qcow2/));
});

void test("a declared format the bytes contradict is refused", { skip: !isRoot && "needs root" }, async () => {
  await assert.rejects(
    extractImage(images.squashfs!, "tar", await freshDest("out-mismatch"), ctx()),
    invalid(/base\.format says "tar" but the file is a squashfs image; set format to "squashfs" or "auto"/),
  );
});

void test("a qcow2 with a backing file is refused: images must be self-contained", { skip: !isRoot && "needs root" }, async () => {
  const overlay = path.join(tmp, "overlay.qcow2");
  run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", images.qcow2!, "-F", "qcow2", overlay]);
  await assert.rejects(extractImage(overlay, "auto", await freshDest("out-overlay"), ctx()), invalid(/is a qcow2 overlay on the backing file ".*disk\.qcow2"; Kiln imports self-contained images only/));
});

void test("a hostile tarball is refused before anything is written", { skip: !isRoot && "needs root" }, async () => {
  const evil = path.join(tmp, "evil.tar");
  await writeFile(evil, writeTar([
    { name: "./", type: "dir" },
    { name: "./etc/", type: "dir" },
    { name: "./etc/escape", type: "symlink", target: "../../../../tmp" },
    { name: "../outside", type: "file", content: "x" },
  ]));
  const dest = await freshDest("out-evil");
  await assert.rejects(extractImage(evil, "auto", dest, ctx()), invalid(/symlink "\.\/etc\/escape" -> "\.\.\/\.\.\/\.\.\/\.\.\/tmp" resolves outside the root; member "\.\.\/outside" climbs out/));
  assert.deepEqual(await readdir(dest), []);
});

void test("a root partition that will not mount is INPUT_INVALID, and nothing stays mounted", { skip: !isRoot && "needs root" }, async () => {
  const bytes = Buffer.from(await readFile(images.disk!));
  bytes.writeUInt32LE(0xff, 20480 * 512 + 1024 + 24); // s_log_block_size: nonsense
  const bad = path.join(tmp, "badsb.raw");
  await writeFile(bad, bytes);
  await assert.rejects(extractImage(bad, "raw", await freshDest("out-badsb"), ctx()), invalid(/badsb\.raw: partition 4 \(Linux root \(x86-64\), ext4, 48\.0 MiB at offset 10485760\) could not be mounted read-only: .*mount/));
  assert.deepEqual(await mountsUnder(tmp), []);
  assert.deepEqual(loopsUnder(tmp), []);
});

void test("a copy that fails while the root is mounted releases the mount (destination full)", { skip: !isRoot && "needs root" }, async () => {
  const dest = await freshDest("out-full");
  run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", dest]);
  try {
    await assert.rejects(extractImage(images.disk!, "raw", dest, ctx()), (e: unknown) => {
      assert.ok(e instanceof KilnError);
      assert.equal(e.code, "STAGE_FAILED", "a full disk is the host's problem, not the image's");
      assert.match(e.message, /No space left on device/);
      return true;
    });
    assert.deepEqual(await mountsUnder(path.join(tmp, "work")), []);
    assert.deepEqual(loopsUnder(tmp), []);
    assert.deepEqual(await readdir(work), []);
  } finally {
    run(["umount", dest]);
  }
});

void test("cancelling while the root is mounted releases the mount", { skip: !isRoot && "needs root" }, async () => {
  const controller = new AbortController();
  // Cancel the moment the copy starts, i.e. with the partition mounted.
  const log = { line: (l: string) => void (l.startsWith("$ cp ") && controller.abort("test cancel")) };
  await assert.rejects(extractImage(images.qcow2!, "qcow2", await freshDest("out-cancel"), { log, signal: controller.signal, workDir: work }), (e: unknown) => {
    assert.ok(e instanceof KilnError);
    assert.equal(e.code, "CANCELLED");
    return true;
  });
  assert.deepEqual(await mountsUnder(tmp), []);
  assert.deepEqual(loopsUnder(tmp), []);
  assert.deepEqual(await readdir(work), []);
});

void test("findmnt and losetup -a show nothing of the test's paths", { skip: !isRoot && "needs root" }, () => {
  const mounts = run(["findmnt", "-rn", "-o", "TARGET"]).split("\n").filter((l) => l.startsWith(tmp));
  assert.deepEqual(mounts, []);
  const loops = run(["losetup", "-a"]).split("\n").filter((l) => l.includes(tmp));
  assert.deepEqual(loops, []);
});
