/**
 * The job queue: pg-boss on the catalog's own database (PGlite or PostgreSQL, through the SQL
 * layer's executeSql adapter; docs/architecture.md#catalog-queue-and-workers). One pg-boss queue per
 * lane, a job type and an architecture (`kiln.create.x86_64`, `kiln.customize.aarch64` …), so a
 * worker takes only the jobs it can run and build: those of the arches it declares (--arch).
 *
 * The catalog's job record, not the queue message, is the truth about a job: a message only says
 * "job X wants a worker". pg-boss never retries by itself (retryLimit 0); a job whose worker died
 * is failed or queued again by the reaper (worker.ts), which also fails the dead message, and a
 * job whose message was lost (never sent, or taken by a process that died before claiming the
 * job) gets a new one from the reaper. A worker claims a job in the catalog before it runs it, so
 * a message more than needed is harmless: it finds the job taken and completes.
 */
import PgBoss from "pg-boss";
import type { Sql } from "../catalog/sql.js";
import { ARCHES, JOB_TYPES, type Arch, type JobType } from "../catalog/records.js";

/** A job type and the architecture its image is built for: `create.x86_64`. */
export type Lane = `${JobType}.${Arch}`;

export function laneOf(job: { job_type: JobType; arch: Arch }): Lane {
  return `${job.job_type}.${job.arch}`;
}

/** The lanes of these arches, every job type. */
export function lanesFor(arches: readonly Arch[]): Lane[] {
  return arches.flatMap((a) => JOB_TYPES.map((t): Lane => `${t}.${a}`));
}

export const ALL_LANES: readonly Lane[] = lanesFor(ARCHES);

export interface QueueMessage {
  /** The queue's own id of this message. */
  queueId: string;
  jobId: string;
  lane: Lane;
}

/** What the queue holds for a job: one entry per message, whatever its state. */
export interface MessageState {
  jobId: string;
  queueId: string;
  /** pg-boss' states: created, retry (waiting), active (taken by a worker), completed, cancelled, failed. */
  state: string;
  created: Date;
  /** When a worker took it (active and later). */
  started: Date | null;
}

export interface JobQueue {
  /** Asks for a worker for this job; returns the message id. */
  enqueue(jobId: string, lane: Lane): Promise<string>;
  /** Marks a message failed, so it is never delivered (again). Unknown ids are ignored. */
  drop(lane: Lane, queueId: string, reason: string): Promise<void>;
  /**
   * Calls `handle` for messages of these lanes, at most `concurrency` at a time per lane. A
   * message stays taken while `handle` runs (the worker's own slots cap the total). Returns a
   * function that stops taking new messages.
   */
  work(lanes: ReadonlyArray<{ lane: Lane; pollSeconds: number }>, concurrency: number, handle: (m: QueueMessage) => Promise<void>): Promise<() => Promise<void>>;
  /** The messages the queue holds for these jobs of one lane (none: never sent, or long gone). */
  messagesFor(lane: Lane, jobIds: string[]): Promise<MessageState[]>;
  stop(): Promise<void>;
}

export function queueName(lane: Lane): string {
  return `kiln.${lane}`;
}

/** pg-boss' limit is 24 h; a build that runs longer is failed by pg-boss, not by Kiln. */
const EXPIRE_SECONDS = 23 * 3600;

/** pg-boss' schema (its default; Kiln does not change it). */
const SCHEMA = "pgboss";

export class PgBossQueue implements JobQueue {
  private constructor(
    private readonly boss: PgBoss,
    private readonly sql: Sql,
  ) {}

  /** Starts pg-boss on the catalog's database (creating its schema on first use). */
  static async start(sql: Sql, opts: { maintenance?: boolean } = {}): Promise<PgBossQueue> {
    const boss = new PgBoss({
      db: { executeSql: (text: string, values: unknown[]) => sql.executeSql(text, values) as Promise<{ rows: unknown[] }> },
      schedule: false,
      supervise: opts.maintenance ?? true,
      migrate: true,
    });
    boss.on("error", () => {
      // pg-boss reports polling errors here (a database restart); it retries on its own, and
      // the catalog's own queries report the database's state.
    });
    await boss.start();
    for (const lane of ALL_LANES) {
      const name = queueName(lane);
      if (!(await boss.getQueue(name))) await boss.createQueue(name, { name, retryLimit: 0, expireInSeconds: EXPIRE_SECONDS });
    }
    return new PgBossQueue(boss, sql);
  }

  async enqueue(jobId: string, lane: Lane): Promise<string> {
    const id = await this.boss.send(queueName(lane), { jobId, lane }, { retryLimit: 0, expireInSeconds: EXPIRE_SECONDS });
    if (!id) throw new Error(`pg-boss did not accept job ${jobId}`);
    return id;
  }

  async drop(lane: Lane, queueId: string, reason: string): Promise<void> {
    await this.boss.fail(queueName(lane), queueId, { reason }).catch(() => {});
  }

  async work(lanes: ReadonlyArray<{ lane: Lane; pollSeconds: number }>, concurrency: number, handle: (m: QueueMessage) => Promise<void>): Promise<() => Promise<void>> {
    const ids: string[] = [];
    // pg-boss 10 runs one batch at a time per work() call: N calls of batch 1 = N jobs at once.
    for (const { lane, pollSeconds } of lanes) {
      for (let i = 0; i < concurrency; i++) {
        ids.push(
          await this.boss.work<{ jobId: string }>(queueName(lane), { batchSize: 1, pollingIntervalSeconds: pollSeconds }, async ([job]) => {
            if (job) await handle({ queueId: job.id, jobId: job.data.jobId, lane });
          }),
        );
      }
    }
    return async () => {
      for (const id of ids) await this.boss.offWork({ id }).catch(() => {});
    };
  }

  async messagesFor(lane: Lane, jobIds: string[]): Promise<MessageState[]> {
    if (jobIds.length === 0) return [];
    // pg-boss 10 keeps messages in <schema>.job, partitioned by queue name, until it archives
    // them (completed ones after 12 h); it has no lookup by payload, hence this query.
    const rows = await this.sql.query<{ job_id: string; id: string; state: string; created_on: Date; started_on: Date | null }>(
      `SELECT data->>'jobId' AS job_id, id::text AS id, state::text AS state, created_on, started_on
         FROM ${SCHEMA}.job WHERE name = $1 AND data->>'jobId' = ANY($2::text[])`,
      [queueName(lane), jobIds],
    );
    return rows.map((r) => ({ jobId: r.job_id, queueId: r.id, state: r.state, created: new Date(r.created_on), started: r.started_on ? new Date(r.started_on) : null }));
  }

  async stop(): Promise<void> {
    await this.boss.stop({ graceful: false, close: false, wait: true });
  }
}
