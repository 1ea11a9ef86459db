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
 * before claiming the job), once it has waited 2 × timeout. Leftovers of a killed worker (mounts, processes, a session's jail) are swept when a worker
 * starts on that machine, and by the engine at every build (host/sweep.ts).
 */
import os from "node:os";
import path from "node:path";
import { rm } from "node:fs/promises";
import type { Catalog, WorkerInfo } from "../catalog/catalog.js";
import { JOB_TYPES, type JobRecord, type JobType } from "../catalog/records.js";
import type { BuildEvent } from "../engine/events.js";
import { isKilnError } from "../errors.js";
import { sweepDeadBuilds } from "../host/sweep.js";
import type { ObjectStore } from "../store/object-store.js";
import { KILN_VERSION } from "../version.js";
import { jobError } from "./job-error.js";
import { JobLog } from "./job-log.js";
import type { JobQueue, MessageState, QueueMessage } from "./queue.js";
import { JOB_RUNNERS, type JobContext, type JobSettings } from "./runner.js";

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
  /** Service log (stderr); job logs go to the catalog. */
  say?: (message: string) => void;
  /** Told when jobs end and sees their engine events (kiln serve's metrics, src/api/metrics.ts). */
  observer?: JobObserver;
}

export interface JobObserver {
  jobEnded(type: JobType, status: "success" | "error", seconds: number): void;
  buildEvent(e: BuildEvent): void;
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
  readonly reaper: Reaper;
  private readonly info: WorkerInfo;

  constructor(
    private readonly catalog: Catalog,
    private readonly store: ObjectStore,
    private readonly queue: JobQueue,
    private readonly opts: WorkerOptions,
  ) {
    this.slots = new Slots(opts.concurrency);
    this.reaper = new Reaper(catalog, queue, opts);
    this.info = { name: opts.name, host: os.hostname(), pid: process.pid, version: KILN_VERSION, concurrency: opts.concurrency };
  }

  get name(): string {
    return this.opts.name;
  }

  get busy(): number {
    return this.running.size;
  }

  async start(): Promise<void> {
    // What a killed worker left on this machine (a session's jail, a build's mounts) goes first.
    for (const r of await sweepDeadBuilds(this.opts.cacheDir, { line: (l) => this.say(l) })) {
      this.say(`worker ${this.opts.name}: cleaned up after a killed job: ${r.processes} processes, ${r.mounts} mounts, ${r.loops} loop devices`);
    }
    await this.catalog.heartbeat(this.info, 0);
    this.timer = setInterval(() => void this.beat(), this.opts.heartbeatSeconds * 1000);
    this.stopTaking = await this.queue.work(JOB_TYPES, this.opts.concurrency, (m) => this.handle(m), this.opts.pollSeconds);
    this.say(`worker ${this.opts.name}: taking jobs (${this.opts.concurrency} at a time), heartbeat every ${this.opts.heartbeatSeconds} s`);
  }

  private say(m: string): void {
    this.opts.say?.(m);
  }

  /** Heartbeat, stop cancelled jobs, reap jobs of dead workers. Errors are reported, never thrown. */
  private async beat(): Promise<void> {
    try {
      await this.catalog.heartbeat(this.info, this.running.size);
      for (const id of await this.catalog.jobsToStop([...this.running.keys()])) {
        this.running.get(id)?.controller.abort("the job was cancelled or deleted through the API");
      }
      await this.reaper.sweep();
    } catch (e) {
      this.say(`worker ${this.opts.name}: heartbeat failed: ${(e as Error).message}`);
    }
  }

  private async handle(m: QueueMessage): Promise<void> {
    if (this.stopping) {
      // Taken while stopping: hand the job back (a failed message would leave it `creating` forever).
      await this.catalog.setJobQueueId(m.jobId, await this.queue.enqueue(m.jobId, m.jobType));
      return;
    }
    await this.slots.acquire();
    try {
      const job = await this.catalog.claimJob(m.jobId, this.opts.name);
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
    const log = new JobLog(catalog, job.id, observer && ((e) => observer.buildEvent(e)));
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
      setStatus: async (status) => {
        if (signal.aborted) throw new Error("cancelled");
        const next = await catalog.setJobStatus(job.id, status);
        if (!next) {
          controller.abort("the job was ended or deleted elsewhere");
          throw new Error("cancelled");
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
      const runner = JOB_RUNNERS[job.job_type];
      if (!runner) {
        throw jobError(`${job.job_type} jobs are not supported by this Kiln`);
      }
      await runner(ctx);
      // The log is whole before the status says the job ended: a log reader stops at that status.
      log.line("status success");
      await log.flush();
      await catalog.setJobStatus(job.id, "success");
      this.say(`job ${job.id}: success`);
      observer?.jobEnded(job.job_type, "success", (Date.now() - started) / 1000);
    } catch (e) {
      const reason = describeFailure(e, signal);
      if (!isKilnError(e) && !signal.aborted) log.line(`stack: ${(e as Error)?.stack ?? String(e)}`);
      log.line(`status error: ${reason}`);
      await log.flush();
      await catalog.setJobStatus(job.id, "error", { kiln: { error: reason } }).catch(() => {});
      this.say(`job ${job.id}: error: ${reason}`);
      observer?.jobEnded(job.job_type, "error", (Date.now() - started) / 1000);
    } finally {
      await log.flush();
      this.running.delete(job.id);
      await rm(workDir, { recursive: true, force: true }).catch(() => {});
    }
  }

  /** Stops taking jobs, cancels the running ones (they end `error`) and says goodbye to the catalog. */
  async stop(reason = "the worker is stopping"): Promise<void> {
    this.stopping = true;
    if (this.timer) clearInterval(this.timer);
    await this.stopTaking?.();
    for (const r of this.running.values()) r.controller.abort(reason);
    await Promise.allSettled([...this.running.values()].map((r) => r.done));
    await this.catalog.workerStopped(this.opts.name).catch(() => {});
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
      return (await this.reapOrphans()) + (await this.resendLost());
    } finally {
      this.sweeping = false;
    }
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
    for (const type of JOB_TYPES) {
      const jobs = waiting.filter((j) => j.jobType === type);
      if (jobs.length === 0) continue;
      const messages = await this.queue.messagesFor(type, jobs.map((j) => j.id));
      for (const j of jobs) {
        const why = lostMessageReason(messages.filter((m) => m.jobId === j.id), liveStarts, bound);
        if (!why) continue;
        const queueId = await this.queue.enqueue(j.id, type);
        if (!(await this.catalog.swapJobQueueId(j.id, j.queueId, queueId))) {
          await this.queue.drop(type, queueId, "another reaper sent a message for this job first, or a worker took it");
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

  /** Fails or requeues the jobs of dead workers. */
  private async reapOrphans(): Promise<number> {
    let handled = 0;
    for (const o of await this.catalog.orphanedJobs(this.opts.timeoutSeconds)) {
      if (!(await this.catalog.releaseJob(o.job.id, o.worker))) continue;
      handled++;
      const why = o.lastSeen
        ? `worker ${o.worker} stopped sending heartbeats (last at ${o.lastSeen}, timeout ${this.opts.timeoutSeconds} s) while the job was ${o.job.status}`
        : `worker ${o.worker} is not registered any more; the job was ${o.job.status}`;
      if (o.queueId) await this.queue.drop(o.job.job_type, o.queueId, why);
      if (o.job.kiln.attempt <= this.opts.retries) {
        const note = `${why}; queued again (attempt ${o.job.kiln.attempt + 1} of ${this.opts.retries + 1})`;
        if (await this.catalog.requeueJob(o.job.id, note)) {
          await this.catalog.appendLog(o.job.id, `${new Date().toISOString().slice(11, 19)} ${note}\n`);
          await this.catalog.setJobQueueId(o.job.id, await this.queue.enqueue(o.job.id, o.job.job_type));
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
