// Runs for real as root: a "dead build" with a mount, a loop device and a live child process is
// swept clean by the next kiln run.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { mkdtemp, mkdir, writeFile, rm, access } from "node:fs/promises";
import path from "node:path";
import { sweepDeadBuilds } from "../../src/host/sweep.js";
import { loopsUnder, mountsUnder, processesUnder } from "../helpers/host.js";

test("the startup sweep releases processes, mounts and loop devices of a dead build", async () => {
  const cache = await mkdtemp("/var/tmp/kiln-sweep-");
  const work = path.join(cache, "work", "20260101T000000-1");
  try {
    await mkdir(path.join(work, "src/dir"), { recursive: true });
    // A pid that is certainly not ours and not alive with that start time.
    await writeFile(path.join(work, "owner.json"), JSON.stringify({ pid: 999999999, start: "1" }));
    await writeFile(path.join(work, "src/dir/file"), "x");
    execFileSync("mksquashfs", [path.join(work, "src"), path.join(work, "img.squashfs"), "-quiet", "-noappend"]);
    execFileSync("mount", ["-t", "tmpfs", "tmpfs", (await mkdirp(path.join(work, "mnt/tmp")))]);
    execFileSync("mount", ["-o", "ro,loop", path.join(work, "img.squashfs"), (await mkdirp(path.join(work, "mnt/tmp/sq")))]);
    const child = spawn("sleep", ["600"], { env: { ...process.env, KILN_WORK: work }, detached: true, stdio: "ignore" });
    child.unref();
    assert.equal((await mountsUnder(work)).length, 2);
    assert.equal(loopsUnder(work).length, 1);
    assert.ok(processesUnder(work).includes(child.pid!));

    const reports = await sweepDeadBuilds(cache, { line: () => {} });
    assert.equal(reports.length, 1);
    assert.equal(reports[0]!.mounts, 2);
    assert.ok(reports[0]!.processes >= 1);
    assert.deepEqual(await mountsUnder(work), []);
    assert.deepEqual(loopsUnder(work), []);
    assert.deepEqual(processesUnder(work), []);
    await assert.rejects(access(work));
  } finally {
    for (const m of await mountsUnder(cache)) execFileSync("umount", ["-l", m]);
    await rm(cache, { recursive: true, force: true });
  }
});

test("a live build's work dir is left alone", async () => {
  const cache = await mkdtemp("/var/tmp/kiln-sweep-");
  const work = path.join(cache, "work", "live");
  try {
    await mkdir(work, { recursive: true });
    const { processStartTime } = await import("../../src/host/workdir.js");
    await writeFile(path.join(work, "owner.json"), JSON.stringify({ pid: process.pid, start: await processStartTime(process.pid) }));
    assert.deepEqual(await sweepDeadBuilds(cache, { line: () => {} }), []);
    await access(work);
  } finally {
    await rm(cache, { recursive: true, force: true });
  }
});

async function mkdirp(p: string): Promise<string> {
  await mkdir(p, { recursive: true });
  return p;
}
