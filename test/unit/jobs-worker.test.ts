/**
 * Worker and reaper on a real catalog and pg-boss queue (PGlite), with the create runner swapped
 * for a stand-in, so the job machinery is tested without building: claims, statuses, logs,
 * cancellation, the concurrency limit, and what happens to jobs of a dead worker.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Catalog } from "../../src/catalog/catalog.js";
import { imsTime, type JobRecord } from "../../src/catalog/records.js";
import { KilnError } from "../../src/errors.js";
import { PgBossQueue } from "../../src/jobs/queue.js";
import { JOB_RUNNERS, type JobRunner } from "../../src/jobs/runner.js";
import { lostMessageReason, Reaper, Worker } from "../../src/jobs/worker.js";
import type { ObjectStore } from "../../src/store/object-store.js";
import { storeUnavailable } from "../../src/store/store-errors.js";

let dir: string;
let catalog: Catalog;
let queue: PgBossQueue;
const realCreate = JOB_RUNNERS.create;
const created: string[] = [];

before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "kiln-worker-"));
  catalog = await Catalog.open(undefined, dir);
  queue = await PgBossQueue.start(catalog.sql);
});
after(async () => {
  JOB_RUNNERS.create = realCreate;
  // pg-boss completes a message after its handler returned: let the last ones finish before the
  // catalog closes under them.
  await until("no message in flight", async () => (await queue.messagesFor("create.x86_64", created)).every((m) => m.state !== "active"), 10_000).catch(() => {});
  await queue.stop();
  await catalog.close();
  await rm(dir, { recursive: true, force: true });
});

async function newJob(arch: JobRecord["arch"] = "x86_64"): Promise<JobRecord> {
  const id = crypto.randomUUID();
  const job = {
    id,
    created: imsTime(),
    job_type: "create",
    artifact_id: crypto.randomUUID(),
    public_key_id: crypto.randomUUID(),
    image_root_archive_name: "x",
    status: "creating",
    resultant_image_id: null,
    arch,
    kiln: { error: null, worker: null, attempt: 0, started: null, ended: null, stages: [], cache_hits: 0, status_seconds: {}, status_since: new Date().toISOString(), cancel_requested: false, log: "" },
  } as unknown as JobRecord;
  await catalog.insert("jobs", job);
  await catalog.setJobQueueId(id, await queue.enqueue(id, `create.${arch}`));
  created.push(id);
  return job;
}

async function until<T>(what: string, fn: () => Promise<T | undefined | false>, ms = 20000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const ended = (id: string) => until(`job ${id} to end`, async () => {
  const j = await catalog.get("jobs", id);
  return j && (j.status === "success" || j.status === "error") ? j : undefined;
});

function worker(name: string, extra: Partial<ConstructorParameters<typeof Worker>[3]> = {}): Worker {
  return new Worker(catalog, {} as ObjectStore, queue, {
    name,
    concurrency: 1,
    heartbeatSeconds: 0.3,
    timeoutSeconds: 2,
    retries: 0,
    workDir: path.join(dir, "work"),
    cacheDir: path.join(dir, "cache"),
    verify: "never",
    maxRecipeSize: 1 << 20,
    session: { listen: "127.0.0.1", host: "localhost", clusterHost: undefined, loginGraceSeconds: 30, timeoutSeconds: 60 },
    siteCas: [],
    pollSeconds: 0.5,
    ...extra,
  });
}

test("a worker runs a queued job through its statuses to success, with its log and timings", async () => {
  JOB_RUNNERS.create = (async (ctx) => {
    await ctx.setStatus("fetching_recipe");
    ctx.log.line("fetched");
    await ctx.setStatus("building_image");
    await ctx.setKiln({ stages: [{ name: "bootstrap", key: "k", cached: true, seconds: 1 }], cache_hits: 1 });
    await ctx.setResult("6a6b2d4e-2f5c-4a9b-9b1e-0c6f7b0e8d11");
  }) satisfies JobRunner;
  const w = worker("w-ok");
  await w.start();
  try {
    const job = await newJob();
    const done = await ended(job.id);
    assert.equal(done.status, "success");
    assert.equal(done.resultant_image_id, "6a6b2d4e-2f5c-4a9b-9b1e-0c6f7b0e8d11");
    assert.equal(done.kiln.worker, "w-ok");
    assert.equal(done.kiln.attempt, 1);
    assert.equal(done.kiln.cache_hits, 1);
    assert.ok(done.kiln.ended);
    assert.deepEqual(Object.keys(done.kiln.status_seconds).sort(), ["building_image", "creating", "fetching_recipe"]);
    const log = (await catalog.readLog(job.id)).map((c) => c.text).join("");
    assert.match(log, /took the create job[\s\S]*status fetching_recipe[\s\S]*fetched[\s\S]*status building_image[\s\S]*status success/);
    assert.equal(await catalog.jobWorker(job.id), null, "the worker lets go of an ended job");
  } finally {
    await w.stop();
  }
});

test("a runner's failure ends the job error with its message; a job cancelled while running stops", async () => {
  JOB_RUNNERS.create = (async (ctx) => {
    if (ctx.job.image_root_archive_name === "x") {
      await ctx.setStatus("building_image");
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(resolve, 30000);
        ctx.signal.addEventListener("abort", () => {
          clearTimeout(t);
          reject(new Error("aborted"));
        });
      });
    }
  }) satisfies JobRunner;
  const w = worker("w-cancel");
  await w.start();
  try {
    const job = await newJob();
    await until("building", async () => (await catalog.get("jobs", job.id))?.status === "building_image");
    await catalog.update("jobs", job.id, (d) => ({ ...d, kiln: { ...d.kiln, cancel_requested: true } }));
    const done = await ended(job.id);
    assert.equal(done.status, "error");
    assert.match(done.kiln.error!, /^cancelled: the job was cancelled or deleted through the API/);
  } finally {
    await w.stop();
  }
});

test("a worker honours its concurrency limit", async () => {
  let running = 0;
  let most = 0;
  JOB_RUNNERS.create = (async () => {
    running++;
    most = Math.max(most, running);
    await new Promise((r) => setTimeout(r, 400));
    running--;
  }) satisfies JobRunner;
  const w = worker("w-two", { concurrency: 2 });
  await w.start();
  try {
    const jobs = await Promise.all([newJob(), newJob(), newJob(), newJob()]);
    for (const j of jobs) assert.equal((await ended(j.id)).status, "success");
    assert.equal(most, 2);
  } finally {
    await w.stop();
  }
});

test("the reaper ends a dead worker's job error with the reason, or queues it again while retries last", async () => {
  // A worker that claimed jobs and then went silent (SIGKILL).
  await catalog.heartbeat({ name: "dead", instance: "i-dead", host: "h", pid: 1, version: "0", concurrency: 1, arches: ["x86_64"] }, 1);
  const a = await newJob();
  assert.ok(await catalog.claimJob(a.id, "dead", "i-dead"));
  await catalog.setJobStatus(a.id, "building_image");
  await catalog.sql.query("UPDATE workers SET last_seen = now() - interval '1 minute' WHERE name = 'dead'");

  const reaper = new Reaper(catalog, queue, { timeoutSeconds: 30, retries: 0 });
  assert.equal(await reaper.sweep(), 1);
  const failed = (await catalog.get("jobs", a.id))!;
  assert.equal(failed.status, "error");
  assert.match(failed.kiln.error!, /worker dead stopped sending heartbeats .* while the job was building_image; the worker died/);
  assert.equal(await reaper.sweep(), 0, "handled once");

  // With a retry, a live worker picks it up again.
  JOB_RUNNERS.create = (async (ctx) => {
    await ctx.setStatus("building_image");
  }) satisfies JobRunner;
  const b = await newJob();
  await catalog.heartbeat({ name: "dead2", instance: "i-dead2", host: "h", pid: 2, version: "0", concurrency: 1, arches: ["x86_64"] }, 1);
  assert.ok(await catalog.claimJob(b.id, "dead2", "i-dead2"));
  await catalog.sql.query("UPDATE workers SET last_seen = now() - interval '1 minute' WHERE name = 'dead2'");
  const w = worker("w-live", { retries: 1 });
  await w.start();
  try {
    const done = await ended(b.id);
    assert.equal(done.status, "success");
    assert.equal(done.kiln.attempt, 2);
    assert.equal(done.kiln.worker, "w-live");
    assert.match((await catalog.readLog(b.id)).map((c) => c.text).join(""), /queued again \(attempt 2 of 2\)/);
  } finally {
    await w.stop();
  }
});

test("a worker restarted under the same name does not keep its dead predecessor's job alive (the heartbeat used to refresh the row by name)", async () => {
  // The first process claimed the job, then was SIGKILLed; a new process of the same name
  // (another instance) keeps sending heartbeats.
  await catalog.heartbeat({ name: "same", instance: "i-killed", host: "elsewhere", pid: 11, version: "0", concurrency: 1, arches: ["x86_64"] }, 1);
  const j = await newJob();
  assert.ok(await catalog.claimJob(j.id, "same", "i-killed"));
  await catalog.setJobStatus(j.id, "building_image");
  await catalog.heartbeat({ name: "same", instance: "i-restarted", host: "elsewhere", pid: 12, version: "0", concurrency: 1, arches: ["x86_64"] }, 0);
  const reaper = new Reaper(catalog, queue, { timeoutSeconds: 30, retries: 0 });
  assert.equal(await reaper.sweep(), 0, "within the timeout the claim's process may still be alive");
  // The database's clock moves on past the timeout for the killed process only.
  await catalog.sql.query("UPDATE workers SET last_seen = now() - interval '1 minute' WHERE instance = 'i-killed'");
  await catalog.heartbeat({ name: "same", instance: "i-restarted", host: "elsewhere", pid: 12, version: "0", concurrency: 1, arches: ["x86_64"] }, 0);
  assert.equal(await reaper.sweep(), 1);
  const done = (await catalog.get("jobs", j.id))!;
  assert.equal(done.status, "error");
  assert.match(done.kiln.error!, /worker same stopped sending heartbeats \(process i-killed, last at/);
  const rows = (await catalog.workers(30)).filter((w) => w.name === "same");
  assert.deepEqual(rows.map((w) => [w.instance, w.pid, w.alive]), [["i-killed", 11, false], ["i-restarted", 12, true]], "each process its own row, pid and liveness");
});

test("a cancelled job whose worker process is gone ends error, cancelled, and is not queued again", async () => {
  await catalog.heartbeat({ name: "gone", instance: "i-gone", host: "elsewhere", pid: 13, version: "0", concurrency: 1, arches: ["x86_64"] }, 1);
  const j = await newJob();
  assert.ok(await catalog.claimJob(j.id, "gone", "i-gone"));
  await catalog.setJobStatus(j.id, "building_image");
  await catalog.update("jobs", j.id, (d) => ({ ...d, kiln: { ...d.kiln, cancel_requested: true } }));
  const reaper = new Reaper(catalog, queue, { timeoutSeconds: 30, retries: 3 });
  assert.equal(await reaper.reapJob(j.id), false, "a live worker process stops the job itself");
  await catalog.workerStopped("i-gone");
  assert.equal(await reaper.reapJob(j.id), true, "known dead: at once");
  const done = (await catalog.get("jobs", j.id))!;
  assert.equal(done.status, "error");
  assert.match(done.kiln.error!, /^cancelled: .*its worker is gone/);
  assert.equal(done.kiln.attempt, 1, "not queued again despite retries");
});

test("a real worker that starts under the name of a dead process on this machine hands that process's job to the reaper at once", async () => {
  const deadPid = spawnSync("true").pid!;
  await catalog.heartbeat({ name: "w-restart", instance: "i-before", host: os.hostname(), pid: deadPid, version: "0", concurrency: 1, arches: ["x86_64"] }, 1);
  const j = await newJob();
  assert.ok(await catalog.claimJob(j.id, "w-restart", "i-before"));
  await catalog.setJobStatus(j.id, "building_image");
  const w = worker("w-restart", { timeoutSeconds: 3600 });
  const t0 = Date.now();
  await w.start();
  try {
    const done = await ended(j.id);
    assert.ok(Date.now() - t0 < 10_000, "well within the one-hour worker timeout");
    assert.equal(done.status, "error");
    assert.match(done.kiln.error!, /worker w-restart stopped or was found dead \(process i-before, at/);
    const rows = (await catalog.workers(3600)).filter((r) => r.name === "w-restart");
    const live = rows.filter((r) => r.alive);
    assert.deepEqual(live.map((r) => [r.instance, r.pid]), [[w.instance, process.pid]], "the live row is this process's, pid and all");
    assert.ok(rows.some((r) => r.instance === "i-before" && r.stopped !== null && !r.alive));
  } finally {
    await w.stop();
  }
});

test("a message delivered for a job that is no longer waiting is skipped", async () => {
  let ran = 0;
  JOB_RUNNERS.create = (async () => {
    ran++;
  }) satisfies JobRunner;
  const j = await newJob();
  await catalog.setJobStatus(j.id, "error", { kiln: { error: "cancelled" } });
  const w = worker("w-skip");
  await w.start();
  try {
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(ran, 0);
    assert.equal((await catalog.get("jobs", j.id))!.status, "error");
  } finally {
    await w.stop();
  }
});

/** A job record in the catalog whose queue message was never sent: the process died in between. */
async function jobWithoutMessage(): Promise<JobRecord> {
  const job = await newJob();
  const queueId = await catalog.jobQueueId(job.id);
  await queue.drop("create.x86_64", queueId!, "test: as if it had never been sent");
  await catalog.sql.query("DELETE FROM pgboss.job WHERE id = $1", [queueId]);
  await catalog.setJobQueueId(job.id, null);
  return job;
}

test("a job left creating without a queue message is sent again by the reaper after 2 × worker-timeout, and runs once", async () => {
  let ran = 0;
  JOB_RUNNERS.create = (async (ctx) => {
    ran++;
    await ctx.setStatus("building_image");
  }) satisfies JobRunner;
  const w = worker("w-lost"); // timeoutSeconds 2: lost after 4 s
  await w.start();
  try {
    const t0 = Date.now();
    const job = await jobWithoutMessage();
    assert.deepEqual(await queue.messagesFor("create.x86_64", [job.id]), [], "no message: no worker can take it");
    await new Promise((r) => setTimeout(r, 2500));
    assert.equal((await catalog.get("jobs", job.id))!.status, "creating", "not before the bound");
    assert.deepEqual(await queue.messagesFor("create.x86_64", [job.id]), []);
    const done = await ended(job.id);
    const waited = (Date.now() - t0) / 1000;
    assert.equal(done.status, "success");
    assert.equal(done.kiln.attempt, 1);
    assert.equal(ran, 1);
    assert.ok(waited >= 4 && waited < 10, `ran ${waited} s after it was created (bound 4 s)`);
    const log = (await catalog.readLog(job.id)).map((c) => c.text).join("");
    assert.match(log, /waited in creating for more than 4 s: its queue message was never sent .*; the reaper sent it to the queue again/);
    assert.match(log, /took the create job, attempt 1/);
  } finally {
    await w.stop();
  }
});

test("the reaper leaves queued messages alone and sends a lost one exactly once", async () => {
  const reaper = new Reaper(catalog, queue, { timeoutSeconds: 30, retries: 0, lostAfterSeconds: 1 });
  const queued = await newJob();
  const lost = await jobWithoutMessage();
  await catalog.sql.query(`UPDATE jobs SET doc = jsonb_set(doc, '{kiln,status_since}', to_jsonb((now() - interval '1 hour')::text)) WHERE id = ANY($1::uuid[])`, [[queued.id, lost.id]]);
  await catalog.sql.query(`UPDATE pgboss.job SET created_on = now() - interval '1 hour' WHERE data->>'jobId' = $1`, [queued.id]);
  try {
    assert.equal(await reaper.sweep(), 1, "only the job without a message");
    const [m] = await queue.messagesFor("create.x86_64", [lost.id]);
    assert.equal(m!.state, "created");
    assert.equal(await catalog.jobQueueId(lost.id), m!.queueId, "the job record names its new message");
    assert.equal((await queue.messagesFor("create.x86_64", [queued.id])).length, 1, "the queued job got no second message");
    assert.equal(await reaper.sweep(), 0, "sent once: the new message is queued");
    assert.equal((await queue.messagesFor("create.x86_64", [lost.id])).length, 1);
  } finally {
    for (const j of [queued, lost]) await catalog.setJobStatus(j.id, "error", { kiln: { error: "test over" } });
  }
});

test("a message taken by a process that died before claiming the job counts as lost; one a live worker may hold does not", () => {
  const at = (s: number) => new Date(Date.now() - s * 1000);
  const msg = (state: string, createdAgo: number, startedAgo: number | null = null) => ({ jobId: "j", queueId: "q", state, created: at(createdAgo), started: startedAgo === null ? null : at(startedAgo) });
  assert.equal(lostMessageReason([msg("created", 3600)], [], 60), undefined, "queued: a worker will take it");
  assert.equal(lostMessageReason([msg("retry", 3600)], [], 60), undefined);
  assert.equal(lostMessageReason([msg("active", 3600, 3000)], [at(3500).getTime()], 60), undefined, "a live worker started before it was taken may hold it");
  assert.match(lostMessageReason([msg("active", 3600, 3000)], [at(100).getTime()], 60)!, /^the process that took its queue message at .* is gone without claiming the job$/);
  assert.match(lostMessageReason([msg("completed", 3600)], [], 60)!, /^its queue message ended completed without a worker claiming the job$/);
  assert.equal(lostMessageReason([msg("failed", 3600), msg("failed", 10)], [], 60), undefined, "sent again less than the bound ago");
  assert.match(lostMessageReason([], [], 60)!, /^its queue message was never sent/);
});

test("a job with two messages runs once: the second finds it claimed", async () => {
  let ran = 0;
  JOB_RUNNERS.create = (async () => {
    ran++;
    await new Promise((r) => setTimeout(r, 300));
  }) satisfies JobRunner;
  const job = await newJob();
  await queue.enqueue(job.id, "create.x86_64");
  const w = worker("w-dup", { concurrency: 2 });
  await w.start();
  try {
    const done = await ended(job.id);
    assert.equal(done.status, "success");
    await until("both messages to be done", async () => (await queue.messagesFor("create.x86_64", [job.id])).every((m) => m.state === "completed"));
    assert.equal(ran, 1);
    assert.equal(done.kiln.attempt, 1);
  } finally {
    await w.stop();
  }
});

test("a job that failed because the object store stayed away is queued again while --job-retries allows", async () => {
  const attempts: number[] = [];
  JOB_RUNNERS.create = (async (ctx) => {
    attempts.push(ctx.job.kiln.attempt);
    await ctx.setStatus("building_image");
    if (ctx.job.kiln.attempt === 1) throw storeUnavailable("s3", "put boot-images/x/rootfs", "cannot reach http://127.0.0.1:1 (ECONNREFUSED) after 9 attempts in 60 s");
  }) satisfies JobRunner;
  const w = worker("w-store-retry", { retries: 1 });
  await w.start();
  try {
    const job = await newJob();
    const done = await ended(job.id);
    assert.equal(done.status, "success");
    assert.deepEqual(attempts, [1, 2]);
    const log = (await catalog.readLog(job.id)).map((c) => c.text).join("");
    assert.match(log, /store s3: put boot-images\/x\/rootfs: cannot reach .*; queued again \(attempt 2 of 2\)/);
    await until("both messages to complete", async () => (await queue.messagesFor("create.x86_64", [job.id])).every((m) => m.state === "completed"));
  } finally {
    await w.stop();
  }
});

test("with no retries left, a store outage ends the job error with the store's reason", async () => {
  JOB_RUNNERS.create = (async () => {
    throw storeUnavailable("s3", "put boot-images/x/rootfs", "503 ServiceUnavailable after 9 attempts in 60 s");
  }) satisfies JobRunner;
  const w = worker("w-store-noretry", { retries: 0 });
  await w.start();
  try {
    const job = await newJob();
    const done = await ended(job.id);
    assert.equal(done.status, "error");
    assert.equal(done.kiln.attempt, 1);
    assert.match(done.kiln.error!, /^store s3: put boot-images\/x\/rootfs: 503 ServiceUnavailable after 9 attempts in 60 s$/);
    // The queue's message is done too (and nothing of the job is in flight when the test ends).
    await until("the message to complete", async () => (await queue.messagesFor("create.x86_64", [job.id])).every((m) => m.state === "completed"));
  } finally {
    await w.stop();
  }
});

test("a cancelled job's runner gets the coded CANCELLED error from setStatus, not a plain Error", async () => {
  let thrown: unknown;
  JOB_RUNNERS.create = (async (ctx) => {
    await ctx.setStatus("building_image");
    await new Promise<void>((resolve) => ctx.signal.addEventListener("abort", () => resolve()));
    try {
      await ctx.setStatus("packaging_artifacts");
    } catch (e) {
      thrown = e;
      throw e;
    }
  }) satisfies JobRunner;
  const w = worker("w-cancel-coded");
  await w.start();
  try {
    const job = await newJob();
    await until("building", async () => (await catalog.get("jobs", job.id))?.status === "building_image");
    await catalog.update("jobs", job.id, (d) => ({ ...d, kiln: { ...d.kiln, cancel_requested: true } }));
    const done = await ended(job.id);
    assert.equal(done.status, "error");
    assert.ok(thrown instanceof KilnError, `not a coded error: ${String(thrown)}`);
    assert.equal(thrown.code, "CANCELLED");
    assert.match(thrown.message, /cancelled or deleted through the API/);
  } finally {
    await w.stop();
  }
});

test("a worker takes only the arches it declares: an aarch64 job waits for the worker that builds aarch64, which takes it", async () => {
  JOB_RUNNERS.create = (async () => {}) satisfies JobRunner;
  const x86 = worker("w-x86", { arches: ["x86_64"] });
  await x86.start();
  try {
    const arm = await newJob("aarch64");
    await new Promise((r) => setTimeout(r, 2000));
    assert.equal((await catalog.get("jobs", arm.id))!.status, "creating", "the x86_64-only worker leaves the aarch64 job alone");
    const both = worker("w-arm", { arches: ["aarch64", "x86_64"] });
    await both.start();
    try {
      const done = await ended(arm.id);
      assert.equal(done.kiln.worker, "w-arm", "taken by the worker that declares aarch64");
      // The engine builds x86_64 only so far: the job ends saying so instead of building the wrong arch.
      assert.equal(done.status, "error");
      assert.match(done.kiln.error ?? "", /builds x86_64 images only; the job's aarch64/);
      const rows = await catalog.workers(10);
      assert.deepEqual(rows.find((w) => w.name === "w-arm" && w.alive)?.arches, ["aarch64", "x86_64"], "GET /v3/workers shows what each worker builds");
    } finally {
      await both.stop();
    }
  } finally {
    await x86.stop();
  }
});

test("a job no live worker builds ends error after --arch-wait, naming its arch and what the live workers build", async () => {
  const x86 = worker("w-only-x86", { arches: ["x86_64"] });
  await x86.start();
  try {
    const arm = await newJob("aarch64");
    const reaper = new Reaper(catalog, queue, { timeoutSeconds: 10, retries: 0, archWaitSeconds: 1 });
    await new Promise((r) => setTimeout(r, 1500));
    await reaper.sweep();
    const done = await ended(arm.id);
    assert.equal(done.status, "error");
    assert.match(done.kiln.error ?? "", /^no worker builds aarch64: the job waited 1 s \(--arch-wait\) and the live workers build x86_64 \(.*w-only-x86.*\); start `kiln worker --arch aarch64`/);
    assert.match((await catalog.readLog(arm.id)).map((c) => c.text).join(""), /error: no worker builds aarch64/);
  } finally {
    await x86.stop();
  }
});
