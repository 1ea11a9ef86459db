/**
 * A worker's jobs do not outlive it: a process that started the watchdog (as every worker does),
 * made a job folder and a build work dir, mounted a tmpfs and started processes there (a recipe
 * script's `sleep`, one that left its process group), is killed with SIGKILL. Within seconds, with
 * no other kiln process started, its processes are gone, its mounts released, its folders removed.
 * A watchdog stopped on purpose leaves a live owner's folders alone.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { access, mkdtemp, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { startWatchdog } from "../../src/host/watchdog.js";
import { createOwnedDir } from "../../src/host/workdir.js";
import { mountsUnder, processesUnder } from "../helpers/host.js";

const dist = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../src");

async function until(what: string, fn: () => Promise<boolean> | boolean, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const gone = (p: string) => access(p).then(() => false, () => true);

test("when a worker dies by SIGKILL its watchdog kills its jobs' processes, unmounts and removes their folders", async () => {
  const root = await mkdtemp("/var/tmp/kiln-watchdog-");
  const cacheWork = path.join(root, "cache", "work");
  const jobs = path.join(root, "jobs");
  const jobDir = path.join(jobs, "5b1c0f7e-8a41-4a8e-9a57-0c2a3f1d2e4b");
  const script = path.join(root, "worker.mjs");
  // What a worker does, in small: watchdog first, then a job folder, a build work dir with a
  // mount, and processes as a job's build leaves them (own process groups, one setsid'd).
  await writeFile(
    script,
    `import { startWatchdog } from ${JSON.stringify(path.join(dist, "host/watchdog.js"))};
     import { createOwnedDir, createWorkDir } from ${JSON.stringify(path.join(dist, "host/workdir.js"))};
     import { exec } from ${JSON.stringify(path.join(dist, "host/exec.js"))};
     import { spawn } from "node:child_process";
     startWatchdog(${JSON.stringify([cacheWork, jobs])});
     await createOwnedDir(${JSON.stringify(jobDir)});
     const work = await createWorkDir(${JSON.stringify(path.join(root, "cache"))}, { line: () => {} });
     await exec(["mkdir", "-p", work.path + "/mnt"]);
     await exec(["mount", "-t", "tmpfs", "tmpfs", work.path + "/mnt"]);
     void exec(["sleep", "300"], { workDir: work.path });
     spawn("setsid", ["sleep", "301"], { env: { ...process.env, KILN_WORK: ${JSON.stringify(jobDir)} }, detached: true, stdio: "ignore" }).unref();
     console.log("ready " + work.path);
     setInterval(() => {}, 1000);`,
  );
  const worker = spawn(process.execPath, [script], { stdio: ["ignore", "pipe", "inherit"] });
  try {
    const line = await new Promise<string>((resolve, reject) => {
      createInterface({ input: worker.stdout! }).once("line", resolve);
      worker.once("exit", (c) => reject(new Error(`the worker stand-in exited ${c}`)));
    });
    const work = line.replace(/^ready /, "");
    await until("both processes", () => processesUnder(work).length >= 1 && processesUnder(jobDir).length >= 1);
    const victims = [...processesUnder(work), ...processesUnder(jobDir)];
    assert.equal((await mountsUnder(work)).length, 1);

    worker.kill("SIGKILL");
    await until("the watchdog to clean up", async () => processesUnder(work).length === 0 && processesUnder(jobDir).length === 0 && (await gone(work)) && (await gone(jobDir)));
    assert.deepEqual(await mountsUnder(root), [], "the build's mount is released");
    for (const pid of victims) assert.ok(await gone(`/proc/${pid}`), `process ${pid} is gone`);
  } finally {
    worker.kill("SIGKILL");
    for (const m of (await mountsUnder(root)).reverse()) execFileSync("umount", ["-l", m]);
    await rm(root, { recursive: true, force: true });
  }
});

test("a watchdog stopped on purpose leaves a live owner's folders alone", async () => {
  const root = await mkdtemp("/var/tmp/kiln-watchdog-");
  const dir = path.join(root, "5b1c0f7e-8a41-4a8e-9a57-0c2a3f1d2e4c");
  try {
    await createOwnedDir(dir);
    const dog = startWatchdog([root]);
    dog.stop();
    await new Promise((r) => setTimeout(r, 1500));
    await access(path.join(dir, "owner.json"));
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
