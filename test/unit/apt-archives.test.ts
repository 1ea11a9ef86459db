import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { access, mkdir, mkdtemp, readdir, rm, stat, unlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { aptArchivesUse, downloadLockPath, openSessionArchives } from "../../src/host/apt-archives.js";
import { lockFile } from "../../src/host/file-lock.js";
import { processesUnder } from "../helpers/host.js";

let tmp: string;
before(async () => {
  tmp = await mkdtemp("/var/tmp/kiln-unit-apt-");
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

let n = 0;
/** A shared archives dir holding `debs` (plus what apt leaves there), and a work dir, on one filesystem. */
async function fixture(debs: string[], base = tmp): Promise<{ shared: string; workDir: string; lines: string[]; log: { line(l: string): void } }> {
  const dir = path.join(base, `case-${++n}`);
  const shared = path.join(dir, "apt", "archives");
  await mkdir(path.join(shared, "partial"), { recursive: true });
  for (const d of debs) await writeFile(path.join(shared, d), d);
  await writeFile(path.join(shared, "lock"), "");
  await writeFile(path.join(shared, "partial", "half_1_all.deb"), "half");
  const workDir = path.join(dir, "work");
  await mkdir(workDir, { recursive: true });
  const lines: string[] = [];
  return { shared, workDir, lines, log: { line: (l) => void lines.push(l) } };
}

const inode = async (p: string) => (await stat(p)).ino;
const debsIn = async (d: string) => (await readdir(d)).filter((x) => x.endsWith(".deb")).sort();

test("which apt-get command lines fetch packages, and whether they also run dpkg", () => {
  const table: Array<[string[], string]> = [
    [["update"], "none"],
    [["install", "curl"], "install"],
    [["install", "linux-image-amd64/bookworm-backports"], "install"],
    [["-o", "Dir::Etc::SourceList=/tmp/x", "install", "curl"], "install"],
    [["-o", "install", "update"], "none"], // "install" is -o's value here
    [["-t", "bookworm-backports", "upgrade"], "install"],
    [["--target-release=bookworm-backports", "dist-upgrade"], "install"],
    [["full-upgrade"], "install"],
    [["reinstall", "dkms"], "install"],
    [["build-dep", "hello"], "install"],
    [["satisfy", "curl (>= 7)"], "install"],
    [["--download-only", "install", "curl"], "download"],
    [["install", "-d", "curl"], "download"],
    [["-yd", "install", "curl"], "download"],
    [["-s", "install", "curl"], "none"],
    [["--simulate", "upgrade"], "none"],
    [["--print-uris", "install", "curl"], "none"],
    [["-qq", "install", "curl"], "install"],
    [["remove", "curl"], "none"],
    [["purge", "curl"], "none"],
    [["autoremove"], "none"],
    [["clean"], "none"],
    [["download", "curl"], "none"], // into the working directory, not the archives
    [["source", "curl"], "none"],
    [[], "none"],
  ];
  for (const [args, want] of table) assert.equal(aptArchivesUse(args), want, args.join(" "));
});

test("the download lock sits beside the shared archives dir, not in it", () => {
  assert.equal(downloadLockPath("/var/cache/kiln/apt/archives"), "/var/cache/kiln/apt/archives.lock");
  assert.equal(downloadLockPath("/var/cache/kiln/apt/archives/"), "/var/cache/kiln/apt/archives.lock");
});

test("a session's archives dir links the shared .debs in and links what it fetched back out on release", async () => {
  const f = await fixture(["a_1_all.deb", "b_1_amd64.deb"]);
  const s = await openSessionArchives(f.shared, { log: f.log, workDir: f.workDir });
  assert.ok(s.path.startsWith(path.join(f.workDir, "apt") + "/"));
  assert.equal((await stat(s.path)).mode & 0o777, 0o755, "apt's _apt user reaches partial/");
  // Only the .debs: not apt's lock, not partial downloads.
  assert.deepEqual(await readdir(s.path).then((x) => x.sort()), ["a_1_all.deb", "b_1_amd64.deb"]);
  assert.equal(await inode(path.join(s.path, "a_1_all.deb")), await inode(path.join(f.shared, "a_1_all.deb")), "a hard link, not a copy");

  // What apt in the chroot does: fetch a new .deb, take its own lock, clean a .deb away.
  await writeFile(path.join(s.path, "c_2_all.deb"), "c");
  await writeFile(path.join(s.path, "lock"), "");
  await unlink(path.join(s.path, "b_1_amd64.deb"));
  await s.release();
  await s.release(); // idempotent

  assert.deepEqual(await debsIn(f.shared), ["a_1_all.deb", "b_1_amd64.deb", "c_2_all.deb"], "the clean did not reach the shared cache");
  assert.deepEqual(f.lines.filter((l) => l.startsWith("apt archive cache")), ["apt archive cache: kept 1 new .deb"]);
  await assert.rejects(access(s.path), "the session's dir is gone");
});

test("fetch links in what other builds published meanwhile and publishes its download before letting go of the lock", async () => {
  const f = await fixture(["a_1_all.deb"]);
  const s = await openSessionArchives(f.shared, { log: f.log, workDir: f.workDir });
  try {
    await writeFile(path.join(f.shared, "b_1_all.deb"), "b"); // another build's download, after this session opened
    await s.fetch(async () => {
      assert.deepEqual(await debsIn(s.path), ["a_1_all.deb", "b_1_all.deb"], "apt will not fetch b again");
      await writeFile(path.join(s.path, "c_1_all.deb"), "c");
    });
    assert.deepEqual(await debsIn(f.shared), ["a_1_all.deb", "b_1_all.deb", "c_1_all.deb"], "published before the next build gets the lock");
    // The lock is free again.
    const again = await lockFile(downloadLockPath(f.shared), { onWait: () => assert.fail("lock still held") });
    await again.release();
  } finally {
    await s.release();
  }
  assert.deepEqual(f.lines.filter((l) => l.startsWith("waiting")), []);
});

test("fetch waits while another build downloads, says so, and a cancel stops the wait", async () => {
  const f = await fixture([]);
  const abort = new AbortController();
  const s = await openSessionArchives(f.shared, { log: f.log, workDir: f.workDir, signal: abort.signal });
  const other = await lockFile(downloadLockPath(f.shared));
  try {
    let ran = false;
    const fetching = s.fetch(async () => {
      ran = true;
    });
    const end = Date.now() + 10_000;
    while (!f.lines.some((l) => l.startsWith("waiting"))) {
      if (Date.now() > end) assert.fail("no waiting line");
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.deepEqual(f.lines.filter((l) => l.startsWith("waiting")), [`waiting for another build's apt download (lock held: ${downloadLockPath(f.shared)})`]);
    assert.equal(processesUnder(f.workDir).length, 1, "one flock waiting, marked with the build's work dir");
    abort.abort("stop");
    await assert.rejects(fetching, { code: "CANCELLED" });
    assert.equal(ran, false);
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(processesUnder(f.workDir), [], "the waiting flock is gone");
  } finally {
    await other.release();
    await s.release();
  }
});

test("a lock waits for its holder and is free once released", async () => {
  const file = path.join(tmp, "plain.lock");
  const first = await lockFile(file);
  let waited = 0;
  let got = false;
  const second = lockFile(file, { onWait: () => waited++ }).then((l) => {
    got = true;
    return l;
  });
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(got, false);
  assert.equal(waited, 1);
  await first.release();
  await (await second).release();
  const third = await lockFile(file, { onWait: () => assert.fail("free lock reported as held") });
  await third.release();
});

test("across filesystems the .debs are copied in and out, whole, and the log says why", async () => {
  const shm = await mkdtemp("/dev/shm/kiln-unit-apt-");
  try {
    const f = await fixture(["a_1_all.deb"], shm);
    const workDir = path.join(tmp, `xdev-work-${n}`);
    await mkdir(workDir, { recursive: true });
    const s = await openSessionArchives(f.shared, { log: f.log, workDir });
    assert.deepEqual(await debsIn(s.path), ["a_1_all.deb"]);
    await writeFile(path.join(s.path, "c_1_all.deb"), "c");
    await s.release();
    assert.deepEqual(await readdir(f.shared).then((x) => x.sort()), ["a_1_all.deb", "c_1_all.deb", "lock", "partial"], "no temporary file left");
    assert.ok(f.lines.some((l) => l.includes("is on another filesystem") && l.includes("copying its .debs")), f.lines.join("\n"));
  } finally {
    await rm(shm, { recursive: true, force: true });
  }
});
