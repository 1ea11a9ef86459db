// The root-tarball safety scan: GNU tar lists, Kiln judges. Tarballs are written here member by
// member (test/helpers/tar-writer.ts) or packed from a tree by GNU tar; nothing is extracted.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtemp, mkdir, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { gzipSync } from "node:zlib";
import { findTarEscapes, parseTarListing, scanTarball, type TarMember } from "../../src/stages/import/tar-safety.js";
import { KilnError } from "../../src/errors.js";
import { writeTar, type TarEntry } from "../helpers/tar-writer.js";

let dir: string;
const log: string[] = [];
const ctx = () => ({ log: { line: (l: string) => void log.push(l) }, workDir: dir });

before(async () => {
  dir = await mkdtemp("/var/tmp/kiln-tar-safety-");
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

let n = 0;
async function tarball(entries: TarEntry[], compress?: "gzip"): Promise<string> {
  const p = path.join(dir, `t${n++}.tar${compress ? ".gz" : ""}`);
  const raw = writeTar(entries);
  await writeFile(p, compress ? gzipSync(raw) : raw);
  return p;
}

/** A plausible root: the members every bad case is added to. */
const ROOT: TarEntry[] = [
  { name: "./", type: "dir" },
  { name: "./etc/", type: "dir" },
  { name: "./etc/passwd", type: "file", content: "root:x:0:0::/root:/bin/sh\n" },
  { name: "./usr/", type: "dir" },
  { name: "./usr/bin/", type: "dir" },
  { name: "./usr/lib/", type: "dir" },
  { name: "./dev/", type: "dir" },
];

async function rejection(entries: TarEntry[], label = "rootfs.tar"): Promise<KilnError> {
  const p = await tarball([...ROOT, ...entries]);
  try {
    await scanTarball(p, label, dir, ctx());
  } catch (e) {
    assert.ok(e instanceof KilnError, String(e));
    assert.equal(e.code, "INPUT_INVALID");
    return e;
  }
  assert.fail("the scan accepted it");
}

void test("a normal root passes: absolute symlinks, relative ones inside, devices, hard links, odd names", async () => {
  const p = await tarball(
    [
      ...ROOT,
      { name: "./usr/bin/editor", type: "symlink", target: "/etc/alternatives/editor" },
      { name: "./etc/mtab", type: "symlink", target: "/proc/self/mounts" },
      { name: "./etc/os-release", type: "symlink", target: "../usr/lib/os-release" },
      { name: "./usr/bin/up", type: "symlink", target: "../../etc/passwd" },
      { name: "./lib", type: "symlink", target: "usr/lib" },
      { name: "./usr/bin/dotty", type: "symlink", target: "/usr/../etc/./passwd" },
      { name: "./usr/bin/self", type: "symlink", target: "." },
      { name: "./etc/passwd-", type: "hardlink", target: "./etc/passwd" },
      { name: "./dev/null", type: "char", major: 1, minor: 3, mode: 0o666 },
      { name: "./dev/loop0", type: "block", major: 7, minor: 0, mode: 0o660 },
      { name: "./dev/initctl", type: "fifo" },
      { name: "./usr/bin/a -> b", type: "file", content: "not a link" },
      { name: "./usr/bin/line\nbreak \"quoted\" back\\slash", type: "file" },
      { name: "./usr/lib/ünïcödé..not-dotdot", type: "file" },
    ],
    "gzip",
  );
  assert.equal(await scanTarball(p, "ok.tar.gz", dir, ctx()), ROOT.length + 14);
});

void test('a "../" member: the message of the issue', async () => {
  const e = await rejection([{ name: "../etc/passwd", type: "file" }]);
  assert.equal(e.message, 'base.image: rootfs.tar: member "../etc/passwd" climbs out of the root with ".."; a root tarball must hold relative paths inside the root');
  assert.deepEqual(e.problems, [{ path: "base.image", message: 'rootfs.tar: member "../etc/passwd" climbs out of the root with ".."' }]);
});

void test("a .. in the middle of a name", async () => {
  const e = await rejection([{ name: "./usr/../../etc/cron.d/x", type: "file" }]);
  assert.match(e.message, /member "\.\/usr\/\.\.\/\.\.\/etc\/cron\.d\/x" climbs out of the root with "\.\."/);
});

void test("an absolute member name", async () => {
  const e = await rejection([{ name: "/etc/shadow", type: "file" }]);
  assert.match(e.message, /: member "\/etc\/shadow" is an absolute path; a root tarball/);
});

void test("hard links to absolute paths and out of the root", async () => {
  const e = await rejection([
    { name: "./etc/x", type: "hardlink", target: "/etc/shadow" },
    { name: "./etc/y", type: "hardlink", target: "../../etc/shadow" },
  ]);
  assert.match(e.message, /hard link "\.\/etc\/x" points to the absolute path "\/etc\/shadow"; hard link "\.\/etc\/y" points to "\.\.\/\.\.\/etc\/shadow", which climbs out of the root with "\.\."/);
});

void test("a relative symlink that climbs out of the root", async () => {
  const e = await rejection([{ name: "./usr/bin/x", type: "symlink", target: "../../../etc/shadow" }]);
  assert.match(e.message, /symlink "\.\/usr\/bin\/x" -> "\.\.\/\.\.\/\.\.\/etc\/shadow" resolves outside the root/);
});

void test("an absolute symlink that climbs above / with ..", async () => {
  const e = await rejection([{ name: "./usr/bin/x", type: "symlink", target: "/../../etc/shadow" }]);
  assert.match(e.message, /symlink "\.\/usr\/bin\/x" -> "\/\.\.\/\.\.\/etc\/shadow" climbs above "\/" with "\.\."/);
});

void test("a chain of symlinks that each look tame but together climb out", async () => {
  const e = await rejection([
    { name: "./usr/lib/a/", type: "dir" },
    { name: "./usr/lib/a/up", type: "symlink", target: ".." }, // usr/lib: fine on its own
    { name: "./x", type: "symlink", target: "usr/lib/a/up/../../.." }, // lexically ".", really above the root
  ]);
  assert.match(e.message, /symlink "\.\/x" -> "usr\/lib\/a\/up\/\.\.\/\.\.\/\.\." resolves outside the root/);
  assert.doesNotMatch(e.message, /"\.\/usr\/lib\/a\/up"/);
});

void test("a member under a symlink the archive made (writing through the link)", async () => {
  const e = await rejection([
    { name: "./host", type: "symlink", target: "/etc" },
    { name: "./host/passwd", type: "file", content: "pwned" },
  ]);
  assert.match(e.message, /member "\.\/host\/passwd" lies under "host", which the archive makes a symlink; extracting it would write through the link/);
});

void test("a hard link to a deep symlink, relinked near the top, climbs out", async () => {
  const e = await rejection([
    { name: "./usr/lib/a/", type: "dir" },
    { name: "./usr/lib/a/top", type: "symlink", target: "../../.." }, // the root: fine where it is
    { name: "./esc", type: "hardlink", target: "./usr/lib/a/top" }, // same text, read from /: above it
  ]);
  assert.match(e.message, /hard link \(to a symlink\) "\.\/esc" -> "\.\.\/\.\.\/\.\." resolves outside the root/);
});

void test("a hard link through a symlink", async () => {
  const e = await rejection([
    { name: "./d", type: "symlink", target: "/etc" },
    { name: "./h", type: "hardlink", target: "./d/shadow" },
  ]);
  assert.match(e.message, /hard link "\.\/h" points to "\.\/d\/shadow" through the symlink "d"/);
});

void test("the root member must be a directory", async () => {
  const p = await tarball([{ name: "./", type: "symlink", target: "/" }]);
  await assert.rejects(scanTarball(p, "r.tar", dir, ctx()), /member "\.\/" is the root itself but not a directory/);
});

void test("many offenders: the first five are shown, the rest counted, all in problems[]", async () => {
  const e = await rejection(Array.from({ length: 8 }, (_, i): TarEntry => ({ name: `/abs${i}`, type: "file" })));
  assert.match(e.message, /"\/abs4" is an absolute path; and 3 more; a root tarball must hold relative paths inside the root$/);
  assert.doesNotMatch(e.message, /abs5/);
  assert.equal(e.problems.length, 8);
});

void test("names are shown decoded and quoted, newlines visible", async () => {
  const e = await rejection([{ name: "../evil\nname ünï", type: "file" }]);
  assert.match(e.message, /member "\.\.\/evil\\nname ünï" climbs out/);
});

void test("xz and zstd tarballs are listed by GNU tar as well", async () => {
  const tree = path.join(dir, "tree");
  await mkdir(path.join(tree, "etc"), { recursive: true });
  await writeFile(path.join(tree, "etc/hostname"), "kiln\n");
  for (const [flag, ext] of [["--xz", "xz"], ["--zstd", "zst"]] as const) {
    const p = path.join(dir, `tree.tar.${ext}`);
    execFileSync("tar", [flag, "-cf", p, "-C", tree, "."]);
    assert.equal(await scanTarball(p, p, dir, ctx()), 3);
  }
});

void test("GNU tar's listing of hostile names is read back byte for byte", async () => {
  const tree = path.join(dir, "names");
  await mkdir(tree, { recursive: true });
  const names = ["a -> b", "x link to y", 'q"uote', "back\\slash", "new\nline", "tab\there", "sp ace "];
  for (const name of names) await writeFile(path.join(tree, name), "");
  await writeFile(Buffer.from([...Buffer.from(tree + "/"), 0xe9, 0x74, 0xe9]), ""); // latin-1 "été", not UTF-8
  execFileSync("ln", ["-s", "../a -> b", path.join(tree, "l -> \"m\"")]);
  const archive = path.join(dir, "names.tar");
  execFileSync("tar", ["-cf", archive, "-C", tree, "."]);
  const listing = execFileSync("tar", ["--list", "--verbose", "--numeric-owner", "--quoting-style=c", "--file", archive], { env: { ...process.env, LC_ALL: "C" } }).toString("latin1");
  const { members, unreadable } = parseTarListing(listing);
  assert.deepEqual(unreadable, []);
  const got = new Map(members.map((m) => [m.name, m]));
  for (const name of names) assert.ok(got.has(`./${name}`), `missing ${JSON.stringify(name)}`);
  assert.ok(got.has("./\xe9t\xe9"));
  assert.deepEqual(got.get('./l -> "m"'), { type: "symlink", letter: "l", name: './l -> "m"', target: "../a -> b" });
  // ../a -> b from the root's top level climbs out: found despite the arrow in both names.
  assert.match(findTarEscapes(members).join("\n"), /symlink "\.\/l -> \\"m\\"" -> "\.\.\/a -> b" resolves outside the root/);
});

void test("an unreadable listing line is refused, not skipped", () => {
  const { members, unreadable } = parseTarListing('-rw-r--r-- 0/0 1 2024-01-01 00:00 "./ok"\nsomething else\n');
  assert.equal(members.length, 1);
  assert.deepEqual(unreadable, ["something else"]);
});

void test("members of other types (a volume label) are refused", () => {
  const members: TarMember[] = [{ type: "other", letter: "V", name: "label" }];
  assert.match(findTarEscapes(members)[0]!, /has type 'V', which is not a file, directory, link, device or FIFO/);
});

void test("gzip of something that is not a tar, and a file that is not a tar at all", async () => {
  const gz = path.join(dir, "junk.tar.gz");
  await writeFile(gz, gzipSync(Buffer.from("just some text, no tar headers here\n".repeat(50))));
  await assert.rejects(scanTarball(gz, "junk.tar.gz", dir, ctx()), /base\.image: junk\.tar\.gz: (holds no members|tar could not list it as a tar archive)/);
  const junk = path.join(dir, "junk.tar");
  await writeFile(junk, Buffer.alloc(4096, 0x41));
  await assert.rejects(scanTarball(junk, "junk.tar", dir, ctx()), (e: unknown) => {
    assert.ok(e instanceof KilnError && e.code === "INPUT_INVALID");
    assert.match(e.message, /^base\.image: junk\.tar: tar could not list it as a tar archive: .*does not look like a tar archive/);
    return true;
  });
});

void test("a file name with a colon is a local file, not host:path", async () => {
  const p = path.join(dir, "host:rootfs.tar");
  await writeFile(p, writeTar(ROOT));
  assert.equal(await scanTarball(p, p, dir, ctx()), ROOT.length);
});
