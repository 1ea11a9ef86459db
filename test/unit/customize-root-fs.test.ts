// RootFs: file operations for SFTP confined to an image root, even when the image changes under
// them. Runs unprivileged on a temp dir ("path" containment, as for a plain session's image).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtemp, mkdir, readFile, rm, symlink, writeFile, lstat, readlink } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { RootFs, RootFsError } from "../../src/host/root-fs.js";

let base: string;
let root: string;
let outside: string;
let fs: RootFs;

before(async () => {
  base = await mkdtemp(path.join(os.tmpdir(), "kiln-rootfs-"));
  root = path.join(base, "root");
  outside = path.join(base, "host");
  await mkdir(path.join(root, "etc"), { recursive: true });
  await mkdir(path.join(root, "run"), { recursive: true });
  await mkdir(outside);
  await writeFile(path.join(outside, "secret"), "host only\n");
  await writeFile(path.join(root, "etc/hostname"), "image\n");
  await symlink("/run/motd", path.join(root, "etc/motd")); // the image's /run
  await symlink(outside, path.join(root, "hostdir")); // absolute: means <root><outside> in the image
  await symlink("../../../../../../../..", path.join(root, "up")); // climbs past the image's /
  fs = new RootFs(root, { kind: "path", dir: root });
});

after(async () => {
  await rm(base, { recursive: true, force: true });
});

const code = (p: Promise<unknown>) =>
  p.then(
    () => "ok",
    (e: NodeJS.ErrnoException) => e.code,
  );

test("reads and writes follow the image's symlinks inside the image", async () => {
  const fh = await fs.openFile("/etc/motd", { read: false, write: true, create: true });
  await fh.writeFile("welcome\n");
  await fh.close();
  assert.equal(await readFile(path.join(root, "run/motd"), "utf8"), "welcome\n");
  assert.equal(await fs.realpath("/etc/motd"), "/run/motd");
  assert.equal(await fs.readlink("/etc/motd"), "/run/motd");
  const rd = await fs.openFile("/etc/../etc/./hostname", { read: true, write: false });
  assert.equal(await rd.readFile("utf8"), "image\n");
  await rd.close();
});

test("paths that climb out or point at host paths stay inside the image", async () => {
  const rel = path.relative("/", path.join(outside, "secret"));
  assert.equal(await code(fs.openFile(`/../../../${rel}`, { read: true, write: false })), "ENOENT");
  assert.equal(await code(fs.openFile(`/up/${rel}`, { read: true, write: false })), "ENOENT");
  assert.equal(await code(fs.openFile("/hostdir/secret", { read: true, write: false })), "ENOENT");
  assert.equal(await fs.realpath("/up"), "/");
  // Creating through them creates inside the image (or fails there), never on the host.
  assert.equal(await code(fs.openFile("/hostdir/planted", { read: false, write: true, create: true })), "ENOENT");
  const fh = await fs.openFile("/up/planted", { read: false, write: true, create: true });
  await fh.close();
  await lstat(path.join(root, "planted"));
  assert.equal(await code(lstat(path.join(outside, "planted"))), "ENOENT");
  assert.equal(await code(lstat(path.join(base, "planted"))), "ENOENT");
});

test("an open that a race redirected outside the root is refused", async () => {
  // What a jailed user racing resolution achieves: the resolved path now runs through a
  // symlink to the host. RootFs checks where the open landed, so it refuses.
  await symlink(outside, path.join(root, "swapped"));
  const raced = fs as unknown as { resolve: (p: string, follow: boolean) => Promise<string> };
  const honest = raced.resolve.bind(fs);
  raced.resolve = async () => path.join(root, "swapped/secret");
  try {
    const err = await fs.openFile("/anything", { read: true, write: false }).catch((e: RootFsError) => e);
    assert.ok(err instanceof RootFsError);
    assert.equal(err.code, "EACCES");
    assert.match(err.message, /outside the image/);
    assert.equal(await code(fs.stat("/anything")), "EACCES");
    assert.equal(await code(fs.setAttributes("/anything", { mode: 0o777 })), "EACCES");
    raced.resolve = async () => path.join(root, "swapped/new-file");
    assert.equal(await code(fs.mkdir("/anything")), "EACCES");
    assert.equal(await code(fs.openFile("/anything", { read: false, write: true, create: true })), "EACCES");
    assert.equal(await code(lstat(path.join(outside, "new-file"))), "ENOENT");
  } finally {
    raced.resolve = honest;
  }
});

test("only regular files are opened for I/O", async () => {
  execFileSync("mkfifo", [path.join(root, "fifo")]);
  await mkdir(path.join(root, "adir"));
  assert.equal(await code(fs.openFile("/fifo", { read: true, write: false })), "EACCES");
  assert.equal(await code(fs.openFile("/fifo", { read: false, write: true, create: true })), "EACCES");
  assert.equal(await code(fs.openFile("/adir", { read: true, write: false })), "EPERM");
  assert.equal(await code(fs.setAttributes("/fifo", { size: 0 })), "EPERM");
});

test("directory, link and rename operations work inside the root", async () => {
  await fs.mkdir("/d", 0o750);
  assert.equal((await fs.stat("/d")).mode & 0o777, 0o750);
  await fs.symlink("/etc/hostname", "/d/link");
  assert.equal(await readlink(path.join(root, "d/link")), "/etc/hostname");
  assert.equal((await fs.stat("/d/link", false)).isSymbolicLink(), true);
  assert.equal((await fs.stat("/d/link")).isFile(), true);
  const fh = await fs.openFile("/d/a", { read: false, write: true, create: true, exclusive: true }, 0o600);
  await fh.writeFile("a");
  await fh.close();
  assert.equal(await code(fs.openFile("/d/a", { read: false, write: true, create: true, exclusive: true })), "EEXIST");
  await fs.symlink("x", "/d/b");
  assert.equal(await code(fs.rename("/d/a", "/d/b")), "EEXIST");
  await fs.rename("/d/a", "/d/c");
  await fs.setAttributes("/d/c", { mode: 0o644, mtime: 1_000_000, atime: 1_000_000, size: 0 });
  const st = await fs.stat("/d/c");
  assert.equal(st.mode & 0o777, 0o644);
  assert.equal(st.mtimeMs, 1_000_000_000);
  assert.equal(st.size, 0);
  assert.deepEqual((await fs.list("/d")).map((e) => e.name).sort(), ["b", "c", "link"]);
  assert.equal(await code(fs.rmdir("/d")), "ENOTEMPTY");
  for (const n of ["b", "c", "link"]) await fs.unlink(`/d/${n}`);
  await fs.rmdir("/d");
  assert.equal(await code(fs.rmdir("/")), "EPERM");
  assert.equal(await code(fs.stat("/d")), "ENOENT");
});
