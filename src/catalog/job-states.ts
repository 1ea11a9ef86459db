/**
 * The job state machine on the catalog: claims by a worker process, status moves (with the time
 * spent in each status), cancellation checks, and the queries of the reaper (orphaned jobs,
 * jobs waiting for a queue message). The job record (`doc`) is the truth; the columns `worker`,
 * `worker_instance` and `queue_id` beside it say which process holds a job and which queue
 * message asked for it (migrations 1 and 4). docs/architecture.md, "Catalog and jobs", says why
 * this lives beside pg-boss rather than in it.
 */
import type { Sql, SqlRunner } from "./sql.js";
import { FINAL_STATUSES, imsTime, type JobRecord, type JobStatus, type RecordKind, type RecordOf } from "./records.js";

export interface JobFilter {
  statuses?: string[];
  jobType?: string;
  createdBefore?: Date;
}

/** Catalog.update, for the jobs table. */
export type UpdateJob = (
  kind: "jobs",
  id: string,
  change: (doc: RecordOf["jobs"], tx: SqlRunner) => Promise<RecordOf["jobs"] | undefined> | RecordOf["jobs"] | undefined,
) => Promise<RecordOf["jobs"] | undefined>;

export class JobStates {
  constructor(
    private readonly sql: Sql,
    private readonly update: UpdateJob,
    /** Tells the catalog's JSON cache a job changed. */
    private readonly changed: (kind: RecordKind, id: string) => void,
  ) {}

  /** Jobs matching IMS' DELETE /jobs filters, oldest first. */
  async findJobs(f: JobFilter): Promise<JobRecord[]> {
    const conds: string[] = [];
    const params: unknown[] = [];
    if (f.statuses && f.statuses.length > 0) {
      params.push(f.statuses);
      conds.push(`status = ANY($${params.length}::text[])`);
    }
    if (f.jobType) {
      params.push(f.jobType);
      conds.push(`job_type = $${params.length}`);
    }
    if (f.createdBefore) {
      params.push(f.createdBefore.toISOString());
      conds.push(`created < $${params.length}::timestamptz`);
    }
    const rows = await this.sql.query<{ doc: JobRecord }>(`SELECT doc FROM jobs ${conds.length ? "WHERE " + conds.join(" AND ") : ""} ORDER BY seq`, params);
    return rows.map((r) => r.doc);
  }

  async setJobQueueId(id: string, queueId: string | null): Promise<void> {
    await this.sql.query("UPDATE jobs SET queue_id = $2 WHERE id = $1", [id, queueId]);
  }

  /**
   * Takes a queued job for a worker process: only a job in `creating` with no worker can be
   * claimed, so a message delivered twice runs once. The claim names the process (instance),
   * which the reaper checks, and the worker's name, which the record shows. Returns the job,
   * now carrying the worker's name.
   */
  async claimJob(id: string, worker: string, instance: string): Promise<JobRecord | undefined> {
    return this.sql.transaction(async (tx) => {
      const rows = await tx.query<{ doc: JobRecord }>("SELECT doc FROM jobs WHERE id = $1 AND worker IS NULL AND status = 'creating' FOR UPDATE", [id]);
      const doc = rows[0]?.doc;
      if (!doc) return undefined;
      const now = imsTime();
      const next: JobRecord = { ...doc, kiln: { ...doc.kiln, worker, attempt: doc.kiln.attempt + 1, started: doc.kiln.started ?? now } };
      await tx.query("UPDATE jobs SET doc = $2, worker = $3, worker_instance = $4 WHERE id = $1", [id, JSON.stringify(next), worker, instance]);
      this.changed("jobs", id);
      return next;
    }).finally(() => this.changed("jobs", id));
  }

  /**
   * Ends a job no worker took, in one transaction with the same row lock a claim takes: false
   * when a worker claimed it (or it ended) meanwhile.
   */
  async failWaitingJob(id: string, reason: string): Promise<boolean> {
    return this.sql.transaction(async (tx) => {
      const rows = await tx.query<{ doc: JobRecord }>("SELECT doc FROM jobs WHERE id = $1 AND worker IS NULL AND status = 'creating' FOR UPDATE", [id]);
      const doc = rows[0]?.doc;
      if (!doc) return false;
      await tx.query("UPDATE jobs SET doc = $2 WHERE id = $1", [id, JSON.stringify(withStatus(doc, "error", { kiln: { error: reason } }))]);
      return true;
    }).finally(() => this.changed("jobs", id));
  }

  /**
   * Moves a job to `status` (recording the seconds spent in the one it leaves), merging `kiln`
   * fields. A job already ended stays ended: returns undefined then.
   */
  async setJobStatus(id: string, status: JobStatus, patch: { kiln?: Partial<JobRecord["kiln"]>; resultant_image_id?: string | null; releaseWorker?: boolean } = {}): Promise<JobRecord | undefined> {
    let changed: JobRecord | undefined;
    await this.update("jobs", id, (doc) => {
      if (FINAL_STATUSES.includes(doc.status)) return undefined;
      changed = withStatus(doc, status, patch);
      return changed;
    });
    if (changed && (patch.releaseWorker || FINAL_STATUSES.includes(status))) await this.sql.query("UPDATE jobs SET worker = NULL, worker_instance = NULL WHERE id = $1", [id]);
    return changed;
  }

  async jobQueueId(id: string): Promise<string | null> {
    const rows = await this.sql.query<{ queue_id: string | null }>("SELECT queue_id FROM jobs WHERE id = $1", [id]);
    return rows[0]?.queue_id ?? null;
  }

  async jobWorker(id: string): Promise<string | null> {
    const rows = await this.sql.query<{ worker: string | null }>("SELECT worker FROM jobs WHERE id = $1", [id]);
    return rows[0]?.worker ?? null;
  }

  /**
   * Of these running jobs, the ones their worker must stop: cancelled through the API, deleted,
   * or ended by someone else (the reaper, when this worker was thought dead).
   */
  async jobsToStop(ids: string[], instance: string): Promise<string[]> {
    if (ids.length === 0) return [];
    // Not this process's any more: the reaper took it while this worker was thought dead (cut
    // off for longer than the timeout) and it may run elsewhere now.
    const rows = await this.sql.query<{ id: string }>(
      `SELECT id::text AS id FROM jobs WHERE id = ANY($1::uuid[]) AND worker_instance = $2
         AND NOT coalesce((doc->'kiln'->>'cancel_requested')::boolean, false) AND status NOT IN ('success', 'error')`,
      [ids, instance],
    );
    const keep = new Set(rows.map((r) => r.id));
    return ids.filter((id) => !keep.has(id));
  }

  /**
   * Running jobs whose worker process has not been heard from for `timeoutSeconds` (or never
   * registered, or is known to have stopped or died), or, with `jobId`, that one job if so. The
   * claim's instance is what counts: another process under the same name does not keep a job
   * alive. Uses the database's clock, so workers' clocks do not matter.
   */
  async orphanedJobs(timeoutSeconds: number, jobId?: string): Promise<Array<{ job: JobRecord; worker: string; instance: string; lastSeen: string | null; stopped: string | null; queueId: string | null }>> {
    const rows = await this.sql.query<{ doc: JobRecord; worker: string; worker_instance: string; last_seen: Date | null; stopped: Date | null; queue_id: string | null }>(
      `SELECT j.doc, j.worker, j.worker_instance, w.last_seen, w.stopped, j.queue_id FROM jobs j LEFT JOIN workers w ON w.instance = j.worker_instance
       WHERE j.worker IS NOT NULL AND j.status NOT IN ('success', 'error') AND ($2::uuid IS NULL OR j.id = $2::uuid)
         AND (w.instance IS NULL OR w.stopped IS NOT NULL OR w.last_seen < now() - make_interval(secs => $1))`,
      [timeoutSeconds, jobId ?? null],
    );
    const iso = (d: Date | null) => (d ? new Date(d).toISOString() : null);
    return rows.map((r) => ({ job: r.doc, worker: r.worker, instance: r.worker_instance ?? "", lastSeen: iso(r.last_seen), stopped: iso(r.stopped), queueId: r.queue_id }));
  }

  /**
   * Takes a job away from a worker process thought dead; false when someone else already did
   * (another reaper) or that process is no longer on it.
   */
  async releaseJob(id: string, instance: string): Promise<boolean> {
    const rows = await this.sql.query("UPDATE jobs SET worker = NULL, worker_instance = NULL WHERE id = $1 AND worker_instance IS NOT DISTINCT FROM $2 AND worker IS NOT NULL RETURNING id", [id, instance || null]);
    return rows.length > 0;
  }

  /** Puts a released job back in the queue's hands: status `creating`, noting why. */
  async requeueJob(id: string, note: string): Promise<JobRecord | undefined> {
    let changed: JobRecord | undefined;
    await this.update("jobs", id, (d) => {
      if (FINAL_STATUSES.includes(d.status)) return undefined;
      changed = withStatus(d, "creating", { kiln: { worker: null, error: note } });
      return changed;
    });
    return changed;
  }

  /**
   * Jobs waiting in `creating` with no worker for more than `seconds` (since they entered
   * `creating`): their queue message should have been taken by now, or was never sent (the
   * process died between the catalog insert and the send). The reaper asks the queue which of
   * them really lack a live message.
   */
  async waitingJobs(seconds: number): Promise<Array<{ id: string; job_type: JobRecord["job_type"]; arch: JobRecord["arch"]; queueId: string | null }>> {
    const rows = await this.sql.query<{ id: string; job_type: JobRecord["job_type"]; arch: JobRecord["arch"] | null; queue_id: string | null }>(
      `SELECT id::text AS id, job_type, doc->>'arch' AS arch, queue_id FROM jobs
       WHERE status = 'creating' AND worker IS NULL
         AND coalesce((doc->'kiln'->>'status_since')::timestamptz, created) < now() - make_interval(secs => $1)
       ORDER BY seq`,
      [seconds],
    );
    return rows.map((r) => ({ id: r.id, job_type: r.job_type, arch: r.arch ?? "x86_64", queueId: r.queue_id }));
  }

  /** Sets a job's queue message id if it is still `from` (compare and set); false when another process changed it. */
  async swapJobQueueId(id: string, from: string | null, to: string): Promise<boolean> {
    const rows = await this.sql.query("UPDATE jobs SET queue_id = $3 WHERE id = $1 AND queue_id IS NOT DISTINCT FROM $2 AND status = 'creating' AND worker IS NULL RETURNING id", [id, from, to]);
    return rows.length > 0;
  }
}

export function withStatus(doc: JobRecord, status: JobStatus, patch: { kiln?: Partial<JobRecord["kiln"]>; resultant_image_id?: string | null }): JobRecord {
  const now = new Date();
  const since = doc.kiln.status_since;
  const seconds = { ...doc.kiln.status_seconds };
  if (since && doc.status !== status) {
    const s = (now.getTime() - new Date(since).getTime()) / 1000;
    seconds[doc.status] = Math.round(((seconds[doc.status] ?? 0) + s) * 10) / 10;
  }
  const final = FINAL_STATUSES.includes(status);
  const kiln = {
    ...doc.kiln,
    ...patch.kiln,
    status_seconds: seconds,
    status_since: doc.status !== status || !since ? now.toISOString() : since,
    ...(final ? { ended: imsTime(now) } : {}),
  };
  return {
    ...doc,
    status,
    ...(patch.resultant_image_id !== undefined ? { resultant_image_id: patch.resultant_image_id } : {}),
    kiln,
  };
}

