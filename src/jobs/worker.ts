/**
 * Workers and the reaper.
 *
 * A worker takes queue messages (at most `concurrency` jobs at once), claims the job in the
 * catalog (a job runs once even if its message came twice), runs its type's runner (runner.ts)
 * in a folder of its own, and writes the final status. Every `heartbeat` seconds it tells the
 * catalog it is alive and stops the jobs that were cancelled or deleted meanwhile.
 *
 * The reaper (in every worker and in `kiln serve`) finds running jobs whose worker has been
 * silent for `timeout` seconds: a worker killed with SIGKILL, a machine that lost power. Each such
 * job is queued again while it has retries left (--job-retries), else it ends `error` with the
 * reason. So no job stays `building_image` longer than timeout + one heartbeat after its worker
 * died. The reaper also sends a new queue message for a job left `creating` with none a worker
 * could take (the process that created it died before sending it, or a process that took it died
 * before claiming the job), once it has waited 2 × timeout. Leftovers of a killed worker (its
 * jobs' processes, mounts, loop devices, folders, a session's jail) are swept by its watchdog the
 * moment it dies (host/watchdog.ts), and again when a worker starts on that machine (host/sweep.ts).
 */
import { randomUUID } from "node:crypto";
import os from "node:os";
import path from "node:path";
import { rm } from "node:fs/promises";
import type { Catalog, WorkerInfo } from "../catalog/catalog.js";
import type { Arch, JobRecord, JobType } from "../catalog/records.js";
import type { BuildEvent } from "../engine/events.js";
import { cancelled, isKilnError } from "../errors.js";
import { isProcessAlive } from "../host/process-alive.js";
import { sweepDeadBuilds, sweepDeadWorkDirs } from "../host/sweep.js";
import { startWatchdog, type Watchdog } from "../host/watchdog.js";
import { createOwnedDir } from "../host/workdir.js";
import type { ObjectStore } from "../store/object-store.js";
import { KILN_VERSION } from "../version.js";
import { jobError } from "./job-error.js";
import { JobLog } from "./job-log.js";
import { ALL_LANES, laneOf, lanesFor, type JobQueue, type MessageState, type QueueMessage } from "./queue.js";
import { nativeArch } from "../host/arches.js";
import { JOB_RUNNERS, type JobContext, type JobSettings } from "./runner.js";

/** How long the end of a job waits for its log lines to reach a catalog that is away. */
const LOG_SETTLE_MS = 60_000;

export interface WorkerOptions extends JobSettings {
  name: string;
  concurrency: number;
  heartbeatSeconds: number;
  timeoutSeconds: number;
  retries: number;
  /** Where each job gets its own folder. */
  workDir: string;
  /** How often an idle worker asks the queue for work. */
  pollSeconds?: number;
  /**
   * The image arches this worker builds, native first (default: this machine's own). It takes
   * jobs of these only; for the others than the first it asks the queue 5 times less often, so a
   * native worker of that arch, when there is one, usually takes the job first.
   */
  arches?: Arch[];
  /** See ReaperOptions.archWaitSeconds. */
  archWaitSeconds?: number;
  /** Service log (stderr); job logs go to the catalog. */
  say?: (message: string) => void;
  /** Told when jobs end and sees their engine events (kiln serve's metrics, src/api/metrics.ts). */
  observer?: JobObserver;
}

export interface JobObserver {
  jobEnded(type: JobType, status: "success" | "error", seconds: number): void;
  buildEvent(e: BuildEvent): void;
}

/** "the live workers build x86_64 (w1, w2)", for a job's log when none builds its arch. */
export function describeArches(alive: Array<{ name: string; arches: Arch[] }>): string {
  if (alive.length === 0) return "no worker is alive";
  const by = new Map<string, string[]>();
  for (const w of alive) for (const a of w.arches) by.set(a, [...(by.get(a) ?? []), w.name]);
  return `the live workers build ${[...by].map(([a, names]) => `${a} (${names.join(", ")})`).join(", ")}`;
}

/** Why a job failed, in one line for the job record. */
export function describeFailure(e: unknown, signal: AbortSignal): string {
  if (signal.aborted) return `cancelled: ${typeof signal.reason === "string" ? signal.reason : ((signal.reason as Error)?.message ?? "cancelled")}`;
  if (isKilnError(e)) return e.hint ? `${e.message} (${e.hint})` : e.message;
  return `internal error: ${(e as Error)?.message ?? String(e)} (a bug in Kiln ${KILN_VERSION}; the job log has the stack)`;
}

class Slots {
  private used = 0;
  private waiters: Array<() => void> = [];
  constructor(private readonly size: number) {}
  async acquire(): Promise<void> {
    if (this.used < this.size) {
      this.used++;
      return;
    }
    await new Promise<void>((resolve) => this.waiters.push(resolve));
  }
  release(): void {
    const next = this.waiters.shift();
    if (next) next();
    else this.used--;
  }
}

export class Worker {
  private readonly running = new Map<string, { controller: AbortController; done: Promise<void> }>();
  private readonly slots: Slots;
  private stopTaking?: () => Promise<void>;
  private timer?: NodeJS.Timeout;
  private stopping = false;
  private watchdog?: Watchdog;
  private beating = false;
  private lastBeat = Date.now();
  /** Jobs this worker stopped because it lost the catalog: it writes no status to them. */
  private readonly lost = new Set<string>();
  readonly reaper: Reaper;
  private readonly info: WorkerInfo;
  private readonly arches: Arch[];

  constructor(
    private readonly catalog: Catalog,
    private readonly store: ObjectStore,
    private readonly queue: JobQueue,
    private readonly opts: WorkerOptions,
  ) {
    this.slots = new Slots(opts.concurrency);
    this.reaper = new Reaper(catalog, queue, opts);
    this.arches = opts.arches && opts.arches.length > 0 ? opts.arches : [nativeArch()];
    this.info = { name: opts.name, instance: randomUUID(), host: os.hostname(), pid: process.pid, version: KILN_VERSION, concurrency: opts.concurrency, arches: this.arches };
  }

  get name(): string {
    return this.opts.name;
  }

  get busy(): number {
    return this.running.size;
  }

  async start(): Promise<void> {
    // What a killed worker left on this machine (a session's jail, a build's mounts) goes first.
    const sweepLog = { line: (l: string) => this.say(l) };
    for (const r of [...(await sweepDeadBuilds(this.opts.cacheDir, sweepLog)), ...(await sweepDeadWorkDirs(this.opts.workDir, sweepLog))]) {
      this.say(`worker ${this.opts.name}: cleaned up after a killed job: ${r.processes} processes, ${r.mounts} mounts, ${r.loops} loop devices`);
    }
    // If this process dies, its jobs' processes, mounts and folders go with it.
    this.watchdog = startWatchdog([path.join(this.opts.cacheDir, "work"), this.opts.workDir]);
    await this.catalog.heartbeat(this.info, 0);
    this.lastBeat = Date.now();
    await this.forgetDeadPredecessors();
    this.timer = setInterval(() => void this.beat(), this.opts.heartbeatSeconds * 1000);
    const poll = this.opts.pollSeconds ?? 1;
    const lanes = this.arches.flatMap((arch, i) => lanesFor([arch]).map((lane) => ({ lane, pollSeconds: i === 0 ? poll : 5 * poll })));
    this.stopTaking = await this.queue.work(lanes, this.opts.concurrency, (m) => this.handle(m));
    this.say(`worker ${this.opts.name}: taking ${this.arches.join(", ")} jobs (${this.opts.concurrency} at a time), heartbeat every ${this.opts.heartbeatSeconds} s`);
  }

  /**
   * A worker of this name on this machine whose process is gone (SIGKILL, then a restart under
   * the same --worker-name) is known dead now: its row is marked stopped, so the reaper takes
   * its jobs at its next sweep instead of after the worker timeout.
   */
  private async forgetDeadPredecessors(): Promise<void> {
    for (const w of await this.catalog.runningInstancesOn(this.info.host, this.info.instance)) {
      if (w.name !== this.info.name || isProcessAlive(w.pid)) continue;
      await this.catalog.workerStopped(w.instance);
      this.say(`worker ${this.opts.name}: the previous process of this name here (pid ${w.pid}) is gone; its jobs go to the reaper`);
    }
  }

  /** This process's id in the catalog (workers table, job claims). */
  get instance(): string {
    return this.info.instance;
  }

  private say(m: string): void {
    this.opts.say?.(m);
  }

  /** Heartbeat, stop cancelled jobs, reap jobs of dead workers. Errors are reported, never thrown. */
  private async beat(): Promise<void> {
    this.fenceIfLost();
    if (this.beating) return; // the last one still waits for the catalog (a network cut hangs it)
    this.beating = true;
    try {
      await this.catalog.heartbeat(this.info, this.running.size);
      this.lastBeat = Date.now();
      for (const id of await this.catalog.jobsToStop([...this.running.keys()], this.info.instance)) {
        this.running.get(id)?.controller.abort("the job was cancelled or deleted through the API");
      }
      await this.reaper.sweep();
    } catch (e) {
      this.reaper.noteTrouble();
      this.say(`worker ${this.opts.name}: heartbeat failed: ${(e as Error).message}`);
    } finally {
      this.beating = false;
    }
  }

  /**
   * A worker that has not reached the catalog for almost the worker timeout is about to be taken
   * for dead: the reaper will give its jobs to another worker. It stops them first (two heartbeats
   * before the timeout), so a job never runs on two workers at once, and writes nothing more to
   * them: their new attempt owns them now.
   */
  private fenceIfLost(): void {
    const silent = (Date.now() - this.lastBeat) / 1000;
    if (this.running.size === 0 || silent < this.opts.timeoutSeconds - 2 * this.opts.heartbeatSeconds) return;
    for (const [id, r] of this.running) {
      if (this.lost.has(id)) continue;
      this.lost.add(id);
      r.controller.abort(`worker ${this.opts.name} could not reach the catalog for ${Math.round(silent)} s (--worker-timeout ${this.opts.timeoutSeconds} s): stopped, the reaper gives the job to another worker`);
      this.say(`worker ${this.opts.name}: lost the catalog for ${Math.round(silent)} s: stopped job ${id}`);
    }
  }

  private async handle(m: QueueMessage): Promise<void> {
    if (this.stopping) {
      // Taken while stopping: hand the job back (a failed message would leave it `creating` forever).
      await this.catalog.setJobQueueId(m.jobId, await this.queue.enqueue(m.jobId, m.lane));
      return;
    }
    await this.slots.acquire();
    try {
      const job = await this.catalog.claimJob(m.jobId, this.opts.name, this.info.instance);
      if (!job) return; // ended, deleted or taken by another worker meanwhile
      await this.catalog.setJobQueueId(job.id, m.queueId);
      const controller = new AbortController();
      const done = this.run(job, controller);
      this.running.set(job.id, { controller, done });
      await done;
    } finally {
      this.slots.release();
    }
  }

  private async run(job: JobRecord, controller: AbortController): Promise<void> {
    const { catalog } = this;
    const observer = this.opts.observer;
    const started = Date.now();
    const log = new JobLog(catalog, job.id, { onEvent: observer && ((e) => observer.buildEvent(e)) });
    const workDir = path.join(this.opts.workDir, job.id);
    const signal = controller.signal;
    const ctx: JobContext = {
      job,
      catalog,
      store: this.store,
      log,
      signal,
      workDir,
      cacheDir: this.opts.cacheDir,
      verify: this.opts.verify,
      maxRecipeSize: this.opts.maxRecipeSize,
      session: this.opts.session,
      siteCas: this.opts.siteCas,
      signKey: this.opts.signKey,
      setStatus: async (status) => {
        if (signal.aborted) throw cancelled(signal.reason);
        const next = await catalog.setJobStatus(job.id, status);
        if (!next) {
          controller.abort("the job was ended or deleted elsewhere");
          throw cancelled(signal.reason);
        }
        log.line(`status ${status}`);
      },
      setKiln: async (patch) => {
        await catalog.update("jobs", job.id, (d) => ({ ...d, kiln: { ...d.kiln, ...patch } }));
      },
      setResult: async (imageId) => {
        await catalog.update("jobs", job.id, (d) => ({ ...d, resultant_image_id: imageId }));
        log.line(`resultant_image_id ${imageId}`);
      },
    };
    this.say(`job ${job.id} (${job.job_type}): started on ${this.opts.name}, attempt ${job.kiln.attempt}`);
    log.line(`worker ${this.opts.name} (${os.hostname()}, pid ${process.pid}) took the ${job.job_type} job, attempt ${job.kiln.attempt}`);
    try {
      await createOwnedDir(workDir); // the sweep removes it if this process dies
      const runner = JOB_RUNNERS[job.job_type];
      if (!runner) {
        throw jobError(`${job.job_type} jobs are not supported by this Kiln`);
      }
      // Routing by arch is in place; the engine itself builds x86_64 images only so far.
      if (job.arch !== "x86_64") throw jobError(`this Kiln builds x86_64 images only; the job's ${job.arch} (from its recipe or image) is not built yet`);
      await runner(ctx);
      // The log is whole before the status says the job ended: a log reader stops at that status.
      log.line("status success");
      await log.settle(LOG_SETTLE_MS);
      await catalog.setJobStatus(job.id, "success");
      this.say(`job ${job.id}: success`);
      observer?.jobEnded(job.job_type, "success", (Date.now() - started) / 1000);
    } catch (e) {
      const reason = describeFailure(e, signal);
      if (this.lost.has(job.id)) {
        log.line(`stopped: ${reason}`); // written if the catalog comes back; the status is the new attempt's
        this.say(`job ${job.id}: ${reason}`);
        return;
      }
      if (isKilnError(e) && e.code === "STORE_UNAVAILABLE" && !signal.aborted && (await this.requeue(job, reason, log))) return;
      if (!isKilnError(e) && !signal.aborted) log.line(`stack: ${(e as Error)?.stack ?? String(e)}`);
      log.line(`status error: ${reason}`);
      await log.settle(LOG_SETTLE_MS);
      await catalog.setJobStatus(job.id, "error", { kiln: { error: reason } }).catch(() => {});
      this.say(`job ${job.id}: error: ${reason}`);
      observer?.jobEnded(job.job_type, "error", (Date.now() - started) / 1000);
    } finally {
      await log.flush();
      this.running.delete(job.id);
      this.lost.delete(job.id);
      await rm(workDir, { recursive: true, force: true }).catch(() => {});
    }
  }

  /**
   * Queues a job again after a failure a later attempt can cure (the object store stayed away for
   * --store-retry-seconds), while it has --job-retries left. False when it has none, or when the
   * job ended or moved meanwhile.
   */
  private async requeue(job: JobRecord, reason: string, log: JobLog): Promise<boolean> {
    if (job.kiln.attempt > this.opts.retries) return false;
    const note = `${reason}; queued again (attempt ${job.kiln.attempt + 1} of ${this.opts.retries + 1})`;
    log.line(note);
    await log.settle(LOG_SETTLE_MS);
    if (!(await this.catalog.releaseJob(job.id, this.info.instance)) || !(await this.catalog.requeueJob(job.id, note))) return false;
    await this.catalog.setJobQueueId(job.id, await this.queue.enqueue(job.id, laneOf(job)));
    this.say(`job ${job.id}: ${note}`);
    return true;
  }

  /** Stops taking jobs, cancels the running ones (they end `error`) and says goodbye to the catalog. */
  async stop(reason = "the worker is stopping"): Promise<void> {
    this.stopping = true;
    if (this.timer) clearInterval(this.timer);
    this.watchdog?.stop();
    await this.stopTaking?.();
    for (const r of this.running.values()) r.controller.abort(reason);
    await Promise.allSettled([...this.running.values()].map((r) => r.done));
    await this.catalog.workerStopped(this.info.instance).catch(() => {});
  }
}

export interface ReaperOptions {
  timeoutSeconds: number;
  retries: number;
  /**
   * A job waiting in `creating` this long with no message a worker could take gets a new one
   * (default: 2 × timeoutSeconds).
   */
  lostAfterSeconds?: number;
  /**
   * A job that waits this long in `creating` while no live worker builds its arch ends `error`
   * saying so (--arch-wait; default 3600).
   */
  archWaitSeconds?: number;
  say?: (message: string) => void;
}

/**
 * Why a job waiting in `creating` has no message a worker could still take, or undefined when it
 * may have one: queued (created, retry), taken by a worker that may still be alive (active, and
 * some live worker started before it was taken), or sent again less than `boundSeconds` ago.
 */
export function lostMessageReason(messages: MessageState[], liveWorkerStarts: number[], boundSeconds: number, now = Date.now()): string | undefined {
  if (messages.some((m) => m.state === "created" || m.state === "retry")) return undefined;
  const active = messages.filter((m) => m.state === "active");
  if (active.some((m) => liveWorkerStarts.some((started) => m.started === null || started <= m.started.getTime()))) return undefined;
  if (messages.some((m) => now - m.created.getTime() < boundSeconds * 1000)) return undefined;
  if (messages.length === 0) return "its queue message was never sent (the process that created it stopped before sending it), or is long gone";
  if (active.length > 0) return `the process that took its queue message at ${active[0]!.started!.toISOString()} is gone without claiming the job`;
  return `its queue message ended ${messages.map((m) => m.state).join(", ")} without a worker claiming the job`;
}

export class Reaper {
  private timer?: NodeJS.Timeout;
  private sweeping = false;
  /** When this process last failed to reach the catalog (ms since the epoch; 0: never). */
  private lastTrouble = 0;

  constructor(
    private readonly catalog: Catalog,
    private readonly queue: JobQueue,
    private readonly opts: ReaperOptions,
  ) {}

  /** Sweeps every `intervalSeconds` (for `kiln serve --no-worker`; workers sweep on their heartbeat). */
  start(intervalSeconds: number): void {
    this.timer = setInterval(() => void this.sweep().catch((e: Error) => this.opts.say?.(`reaper: ${e.message}`)), intervalSeconds * 1000);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  /**
   * Fails or requeues the jobs of dead workers, and sends a new queue message for jobs whose
   * message was lost; returns how many jobs it handled.
   */
  async sweep(): Promise<number> {
    if (this.sweeping) return 0;
    this.sweeping = true;
    try {
      // After an outage of the catalog (a PostgreSQL restart, a network cut) every worker's
      // last heartbeat looks old, live ones too: reap only once the catalog has been reachable
      // from here for a whole timeout, which gives every live worker time to report back.
      const reap = Date.now() - this.lastTrouble >= this.opts.timeoutSeconds * 1000;
      return (reap ? (await this.reapOrphans()) + (await this.failUnbuildable()) : 0) + (await this.resendLost());
    } catch (e) {
      this.noteTrouble();
      throw e;
    } finally {
      this.sweeping = false;
    }
  }

  /**
   * Ends the jobs no live worker can build: waiting for longer than --arch-wait, and no worker
   * alive declares their arch (a cluster of x86_64 workers given an aarch64 recipe).
   */
  private async failUnbuildable(): Promise<number> {
    const wait = this.opts.archWaitSeconds ?? 3600;
    const waiting = await this.catalog.waitingJobs(wait);
    if (waiting.length === 0) return 0;
    const alive = (await this.catalog.workers(this.opts.timeoutSeconds)).filter((w) => w.alive);
    let ended = 0;
    for (const j of waiting) {
      if (alive.some((w) => w.arches.includes(j.arch))) continue;
      const reason = `no worker builds ${j.arch}: the job waited ${wait} s (--arch-wait) and ${describeArches(alive)}; start \`kiln worker --arch ${j.arch}\` on a machine that builds it (its own arch, or one with qemu-user-static's binfmt_misc handler)`;
      if (!(await this.catalog.failWaitingJob(j.id, reason))) continue;
      if (j.queueId) await this.queue.drop(laneOf(j), j.queueId, reason);
      await this.catalog.appendLog(j.id, `${new Date().toISOString().slice(11, 19)} error: ${reason}\n`);
      this.opts.say?.(`reaper: job ${j.id}: ${reason}`);
      ended++;
    }
    return ended;
  }

  /** Tells the reaper this process could not reach the catalog (a failed heartbeat). */
  noteTrouble(): void {
    this.lastTrouble = Date.now();
  }

  /**
   * Jobs that wait in `creating`, unclaimed, for longer than the bound and have no message a
   * worker could take (lostMessageReason) get a new one. A job is claimed once in the catalog
   * (Catalog.claimJob), so a message too many is harmless; the compare-and-set on the job's
   * queue id keeps two reapers from both sending one.
   */
  private async resendLost(): Promise<number> {
    const bound = this.opts.lostAfterSeconds ?? 2 * this.opts.timeoutSeconds;
    const waiting = await this.catalog.waitingJobs(bound);
    if (waiting.length === 0) return 0;
    const liveStarts = (await this.catalog.workers(this.opts.timeoutSeconds)).filter((w) => w.alive).map((w) => new Date(w.started).getTime());
    let sent = 0;
    for (const lane of ALL_LANES) {
      const jobs = waiting.filter((j) => laneOf(j) === lane);
      if (jobs.length === 0) continue;
      const messages = await this.queue.messagesFor(lane, jobs.map((j) => j.id));
      for (const j of jobs) {
        const why = lostMessageReason(messages.filter((m) => m.jobId === j.id), liveStarts, bound);
        if (!why) continue;
        const queueId = await this.queue.enqueue(j.id, lane);
        if (!(await this.catalog.swapJobQueueId(j.id, j.queueId, queueId))) {
          await this.queue.drop(lane, queueId, "another reaper sent a message for this job first, or a worker took it");
          continue;
        }
        sent++;
        const note = `waited in creating for more than ${bound} s: ${why}; the reaper sent it to the queue again`;
        await this.catalog.appendLog(j.id, `${new Date().toISOString().slice(11, 19)} ${note}\n`);
        this.opts.say?.(`reaper: job ${j.id}: ${note}`);
      }
    }
    return sent;
  }

  /**
   * Ends one job at once if its worker process is gone (the cancel route: a job whose worker
   * died cannot wait for that worker to notice); false when its worker may still be alive.
   */
  async reapJob(jobId: string): Promise<boolean> {
    return (await this.reapOrphans(jobId)) > 0;
  }

  /**
   * Fails or requeues the jobs of dead worker processes (one job with `jobId`). A job whose
   * cancel was asked for ends `error`, cancelled, and is never queued again.
   */
  private async reapOrphans(jobId?: string): Promise<number> {
    let handled = 0;
    for (const o of await this.catalog.orphanedJobs(this.opts.timeoutSeconds, jobId)) {
      if (!(await this.catalog.releaseJob(o.job.id, o.instance))) continue;
      handled++;
      const proc = o.instance ? `process ${o.instance}, ` : "";
      const why = o.stopped
        ? `worker ${o.worker} stopped or was found dead (${proc}at ${o.stopped}) while the job was ${o.job.status}`
        : o.lastSeen
          ? `worker ${o.worker} stopped sending heartbeats (${proc}last at ${o.lastSeen}, timeout ${this.opts.timeoutSeconds} s) while the job was ${o.job.status}`
          : `worker ${o.worker} (${proc.slice(0, -2) || "process unknown"}) is not registered any more; the job was ${o.job.status}`;
      if (o.queueId) await this.queue.drop(laneOf(o.job), o.queueId, why);
      if (o.job.kiln.cancel_requested) {
        const reason = `cancelled: the job was cancelled through the API and its worker is gone (${why})`;
        await this.catalog.setJobStatus(o.job.id, "error", { kiln: { error: reason } });
        await this.catalog.appendLog(o.job.id, `${new Date().toISOString().slice(11, 19)} error: ${reason}\n`);
      } else if (o.job.kiln.attempt <= this.opts.retries) {
        const note = `${why}; queued again (attempt ${o.job.kiln.attempt + 1} of ${this.opts.retries + 1})`;
        if (await this.catalog.requeueJob(o.job.id, note)) {
          await this.catalog.appendLog(o.job.id, `${new Date().toISOString().slice(11, 19)} ${note}\n`);
          await this.catalog.setJobQueueId(o.job.id, await this.queue.enqueue(o.job.id, laneOf(o.job)));
        }
      } else {
        const reason = `${why}; the worker died (killed, crashed or its machine went away)${this.opts.retries > 0 ? ` and the job's ${this.opts.retries} retries are used up` : "; --job-retries would queue it again"}`;
        await this.catalog.setJobStatus(o.job.id, "error", { kiln: { error: reason } });
        await this.catalog.appendLog(o.job.id, `${new Date().toISOString().slice(11, 19)} error: ${reason}\n`);
      }
      this.opts.say?.(`reaper: job ${o.job.id}: ${why}`);
    }
    return handled;
  }
}
