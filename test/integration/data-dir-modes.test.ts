/**
 * A service's data dir is private to its user: `kiln serve` on a new data dir leaves it 0700,
 * tokens and keys 0600 and no catalog file writable (or readable) by group or others; on a data
 * dir an older Kiln (or an operator) left loose (0777 folders, 0666 files, as PGlite makes
 * them) it tightens everything at start, but leaves the modes inside work/ alone.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { chmod, lstat, mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { createToken, startServe } from "../helpers/service-process.js";

async function walk(dir: string, out: Array<{ p: string; mode: number; dir: boolean }> = []): Promise<typeof out> {
  for (const name of await readdir(dir)) {
    const p = path.join(dir, name);
    const st = await lstat(p);
    out.push({ p, mode: st.mode & 0o7777, dir: st.isDirectory() });
    if (st.isDirectory()) await walk(p, out);
  }
  return out;
}

const octal = (m: number) => m.toString(8).padStart(4, "0");

async function assertPrivate(dataDir: string, when: string): Promise<void> {
  assert.equal(octal((await lstat(dataDir)).mode & 0o7777), "0700", `${when}: the data dir`);
  assert.equal(octal((await lstat(path.join(dataDir, "tokens.json"))).mode & 0o7777), "0600", `${when}: tokens.json`);
  const catalog = await walk(path.join(dataDir, "catalog"));
  assert.ok(catalog.length > 500, `${when}: the catalog has its files (${catalog.length})`);
  const loose = catalog.filter((e) => (e.mode & 0o077) !== 0).map((e) => `${octal(e.mode)} ${e.p}`);
  assert.deepEqual(loose, [], `${when}: catalog files open to group or others`);
}

test("kiln serve keeps its data dir private, and tightens a loose one at start", async () => {
  const dataDir = path.join(await mkdtemp("/var/tmp/kiln-modes-"), "data");
  try {
    await createToken(dataDir, "admin");
    let svc = await startServe(["--data-dir", dataDir, "--no-worker"]);
    await assertPrivate(dataDir, "a new data dir, running");
    await svc.stop();
    await assertPrivate(dataDir, "a new data dir, stopped");

    // An older Kiln's data dir: everything open to everyone, a signing key too; an image root's
    // /tmp under work/ must keep its own mode.
    await mkdir(path.join(dataDir, "objects", ".kiln"), { recursive: true });
    await writeFile(path.join(dataDir, "objects", ".kiln", "signing-key"), "k".repeat(64));
    await mkdir(path.join(dataDir, "work", "job", "root", "tmp"), { recursive: true });
    for (const e of await walk(dataDir)) await chmod(e.p, e.dir ? 0o777 : 0o666);
    await chmod(dataDir, 0o777);
    await chmod(path.join(dataDir, "work", "job", "root", "tmp"), 0o1777);
    const before = (await walk(path.join(dataDir, "catalog"))).filter((e) => e.mode === 0o666).length;
    assert.ok(before > 500, "the catalog starts out loose");

    svc = await startServe(["--data-dir", dataDir, "--no-worker"]);
    try {
      await assertPrivate(dataDir, "an upgraded data dir, running");
      assert.equal(octal((await lstat(path.join(dataDir, "objects", ".kiln", "signing-key"))).mode & 0o7777), "0600", "the store's signing key");
      assert.equal(octal((await lstat(path.join(dataDir, "objects"))).mode & 0o7777), "0700");
      assert.equal(octal((await lstat(path.join(dataDir, "work"))).mode & 0o7777), "0700");
      assert.equal(octal((await lstat(path.join(dataDir, "work", "job", "root", "tmp"))).mode & 0o7777), "1777", "modes inside work/ are the images' own");
      assert.match(svc.output().stderr, /made \d+ files and folders private/);
    } finally {
      await svc.stop();
    }
  } finally {
    await rm(path.dirname(dataDir), { recursive: true, force: true });
  }
});
