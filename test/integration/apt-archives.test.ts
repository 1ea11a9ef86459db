// Runs for real as root: chroot sessions of concurrent builds share one apt archive cache. Two
// sessions installing at once both succeed and fetch a .deb once; a recipe script's own apt-get
// runs while another build's dpkg holds apt's archives lock (which used to fail with "Could not
// get lock /var/cache/apt/archives/lock"); a session waits for another build's download, says so,
// and stops waiting when cancelled.
//
// The root is the bookworm minbase bootstrap layer, shared with other suites (sharedLayers); the
// packages come from a local flat repository in each session's /tmp through apt's copy: method,
// which downloads into the archives dir as http would, so nothing here needs the network.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { access, chmod, cp, mkdir, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { readFileSync } from "node:fs";
import path from "node:path";
import { downloadLockPath } from "../../src/host/apt-archives.js";
import { openChroot, type ChrootSession } from "../../src/host/chroot.js";
import { lockFile } from "../../src/host/file-lock.js";
import { mountOverlay } from "../../src/host/mount.js";
import { Scope } from "../../src/host/scope.js";
import { mountsUnder, processesUnder } from "../helpers/host.js";
import { runKiln, scratch } from "../helpers/kiln.js";

const RECIPE = `apiVersion: kiln/v1
name: apt-archives-test
base: { debian: bookworm, variant: minbase }
outputs: [manifest]
verify: none
`;
/** apt reads only the local repository (never the image's Debian mirror). */
const LOCAL = ["-o", "Dir::Etc::SourceList=/tmp/kiln-repo/sources.list", "-o", "Dir::Etc::SourceParts=/tmp/kiln-repo/parts.d"];

let s: Awaited<ReturnType<typeof scratch>>;
let lower: string;
let repo: string;
let sharedCount = 0;

before(async () => {
  s = await scratch("kiln-apt-", { sharedLayers: true });
  const recipe = path.join(s.dir, "recipe.yaml");
  await writeFile(recipe, RECIPE);
  const plan = await runKiln(["plan", recipe, "--json", "--cache-dir", s.cache]);
  assert.equal(plan.code, 0, plan.stderr);
  const bootstrap = (JSON.parse(plan.stdout) as { stages: Array<{ kind: string; key: string; cached: boolean }> }).stages.find((x) => x.kind === "bootstrap")!;
  if (!bootstrap.cached) {
    const r = await runKiln(["build", recipe, "--cache-dir", s.cache, "--out", s.out("out"), "--no-verify"]);
    assert.equal(r.code, 0, r.stderr + r.stdout.slice(-3000));
  }
  lower = path.join(s.cache, "layers", bootstrap.key, "tree");
  repo = await makeRepo(path.join(s.dir, "repo"));
});

after(async () => {
  assert.deepEqual(await mountsUnder(s.dir), [], "no mounts left");
  assert.deepEqual(processesUnder(s.dir), [], "no processes left");
  // cache/layers links to the shared layers: rm removes the link, not the layers.
  await rm(s.dir, { recursive: true, force: true });
});

interface Session {
  chroot: ChrootSession;
  root: string;
  upper: string;
  workDir: string;
  lines: string[];
  release(): Promise<void>;
}

/** A chroot session as one build's stage opens it, over its own overlay, with the repo's lists. */
async function openSession(name: string, shared: string, signal?: AbortSignal): Promise<Session> {
  const workDir = path.join(s.dir, name);
  const lines: string[] = [];
  const log = { line: (l: string) => void lines.push(l) };
  const scope = new Scope();
  try {
    const upper = path.join(workDir, "upper");
    const root = scope.use(await mountOverlay(path.join(workDir, "mnt"), { lower: [lower], upper, work: path.join(workDir, "ovl") }, { log, workDir })).path;
    const chroot = scope.use(await openChroot(root, { log, signal, workDir, aptArchives: shared }));
    await cp(repo, path.join(root, "tmp/kiln-repo"), { recursive: true }); // the session's /tmp is its own tmpfs
    await chroot.apt([...LOCAL, "update"]);
    return { chroot, root, upper, workDir, lines, release: () => scope.release() };
  } catch (e) {
    await scope.release();
    throw e;
  }
}

function freshShared(): string {
  return path.join(s.dir, `shared-${++sharedCount}`, "archives");
}

async function waitFor(what: string, ok: () => boolean, seconds = 60): Promise<void> {
  const end = Date.now() + seconds * 1000;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out after ${seconds} s waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const installed = (x: Session, file: string) => access(path.join(x.upper, file)).then(() => true, () => false);
const fetched = (lines: string[], pkg: string) => lines.filter((l) => new RegExp(`^Get:\\d+ copy:\\S+ \\./ ${pkg} `).test(l)).length;

test("two builds install from one archive cache at the same time: both succeed, the .deb is fetched once", async () => {
  const shared = freshShared();
  const [a, b] = await Promise.all([openSession("both-a", shared), openSession("both-b", shared)]);
  try {
    await Promise.all([a.chroot.apt([...LOCAL, "install", "kiln-probe"]), b.chroot.apt([...LOCAL, "install", "kiln-probe"])]);
    assert.ok(await installed(a, "usr/share/kiln-probe/data"));
    assert.ok(await installed(b, "usr/share/kiln-probe/data"));
    assert.equal(fetched([...a.lines, ...b.lines], "kiln-probe"), 1, [...a.lines, ...b.lines].join("\n"));
    assert.deepEqual(await debs(shared), ["kiln-probe_1.0_all.deb"]);
    // Nothing of the cache ends up in the layers.
    for (const x of [a, b]) assert.deepEqual(await readdir(path.join(x.upper, "var/cache/apt/archives")).catch(() => []), []);
  } finally {
    await a.release();
    await b.release();
  }
});

test("a script's apt-get runs while another build's dpkg holds apt's archives lock", async () => {
  const shared = freshShared();
  const [a, b] = await Promise.all([openSession("lock-a", shared), openSession("lock-b", shared)]);
  try {
    // kiln-slow's postinst runs (apt-get holding its archives lock) until the test lets it finish.
    const slow = a.chroot.apt([...LOCAL, "install", "kiln-slow"]);
    await waitFor("kiln-slow's postinst", () => a.lines.some((l) => l.includes("kiln-slow: configuring")));
    // As a recipe script or Ansible's apt module would: plain apt-get, no Kiln lock involved.
    await b.chroot.run(["apt-get", "-y", ...LOCAL, "install", "kiln-probe"]);
    assert.ok(await installed(b, "usr/share/kiln-probe/data"));
    await writeFile(path.join(a.root, "tmp/kiln-slow-go"), "");
    await slow;
    assert.ok(await installed(a, "usr/share/kiln-slow/data"));
  } finally {
    await a.release();
    await b.release();
  }
  // What each session fetched is in the shared cache once it ends, the script's download too.
  assert.deepEqual(await debs(shared), ["kiln-probe_1.0_all.deb", "kiln-slow_1.0_all.deb"]);
});

test("a build waits for another build's download, says so, and stops waiting when cancelled", async () => {
  const shared = freshShared();
  const abort = new AbortController();
  const [a, c] = await Promise.all([openSession("wait-a", shared), openSession("wait-c", shared, abort.signal)]);
  try {
    const other = await lockFile(downloadLockPath(shared)); // another build is downloading
    const install = a.chroot.apt([...LOCAL, "install", "kiln-probe"]);
    let settled = false;
    void install.finally(() => (settled = true)).catch(() => {});
    await waitFor("the waiting line", () => a.lines.some((l) => l.startsWith("waiting for another build's apt download (lock held")));
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(settled, false, "no download while the lock is held");
    await other.release();
    await install;
    assert.ok(await installed(a, "usr/share/kiln-probe/data"));
    assert.ok(a.lines.some((l) => /^got the apt download lock after \d+\.\d s$/.test(l)), a.lines.join("\n"));

    const again = await lockFile(downloadLockPath(shared));
    try {
      const t0 = Date.now();
      const cancelled = c.chroot.apt([...LOCAL, "install", "kiln-probe"]);
      await waitFor("the waiting line", () => c.lines.some((l) => l.startsWith("waiting for another build's apt download")));
      abort.abort("test cancel");
      await assert.rejects(cancelled, { code: "CANCELLED" });
      assert.ok(Date.now() - t0 < 10_000);
      // The session's jail (its init) lives until the session is released; nothing else may.
      const left = processesUnder(c.workDir).map((pid) => readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" ")).filter((cmd) => !cmd.startsWith("kiln-jail-init") && !cmd.startsWith("unshare "));
      assert.deepEqual(left, [], "the waiting flock is gone");
      assert.equal(await installed(c, "usr/share/kiln-probe/data"), false);
    } finally {
      await again.release();
    }
  } finally {
    await a.release();
    await c.release();
  }
});

async function debs(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((n) => n.endsWith(".deb")).sort();
}

/**
 * A flat repository with two packages: kiln-probe (a 256 KiB file) and kiln-slow, whose postinst
 * says "kiln-slow: configuring" and waits up to a minute for /tmp/kiln-slow-go.
 */
async function makeRepo(dir: string): Promise<string> {
  await mkdir(path.join(dir, "parts.d"), { recursive: true });
  const stanzas: string[] = [];
  for (const name of ["kiln-probe", "kiln-slow"]) {
    const src = path.join(dir, "..", `src-${name}`);
    await mkdir(path.join(src, "DEBIAN"), { recursive: true });
    await mkdir(path.join(src, "usr/share", name), { recursive: true });
    await writeFile(path.join(src, "usr/share", name, "data"), createHash("sha256").update(name).digest().toString("hex").repeat(4096));
    // prettier-ignore
    await writeFile(path.join(src, "DEBIAN/control"), [
      `Package: ${name}`, "Version: 1.0", "Architecture: all", "Maintainer: Kiln tests <kiln@example.invalid>",
      "Description: Kiln apt archive cache test package", "",
    ].join("\n"));
    if (name === "kiln-slow") {
      const postinst = path.join(src, "DEBIAN/postinst");
      await writeFile(postinst, '#!/bin/sh\necho "kiln-slow: configuring"\ni=0\nwhile [ ! -e /tmp/kiln-slow-go ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done\n');
      await chmod(postinst, 0o755);
    }
    const deb = path.join(dir, `${name}_1.0_all.deb`);
    execFileSync("dpkg-deb", ["--root-owner-group", "--build", src, deb], { stdio: "ignore" });
    const bytes = await readFile(deb);
    const control = execFileSync("dpkg-deb", ["--field", deb], { encoding: "utf8" }).trimEnd();
    stanzas.push(`${control}\nFilename: ./${path.basename(deb)}\nSize: ${(await stat(deb)).size}\nSHA256: ${createHash("sha256").update(bytes).digest("hex")}\n`);
  }
  await writeFile(path.join(dir, "Packages"), stanzas.join("\n"));
  await writeFile(path.join(dir, "sources.list"), "deb [trusted=yes] copy:/tmp/kiln-repo ./\n");
  return dir;
}
