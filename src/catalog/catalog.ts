/**
 * The catalog: IMS records (recipes, images, public keys, jobs), job logs and the worker
 * registry, on the SQL layer (PGlite or PostgreSQL, sql.ts).
 *
 * Contract:
 *  - ids are UUIDs chosen by the caller; lists come back in insertion order (IMS: no paging);
 *  - `deleted: true` addresses the soft-deleted records (`/v3/deleted/…`), false the live ones;
 *    a record is in exactly one of the two;
 *  - *Json methods return the stored JSON text as is, for the API to send without re-encoding;
 *  - update() reads, changes and writes one record under a row lock, so concurrent PATCHes of
 *    one record apply one after the other.
 *
 * The catalog keeps the JSON it serves in memory (all the records of a kind from its first read;
 * a write evicts the records it touched and the kind's lists):
 *  - on PGlite always: the embedded catalog admits one process (sql.ts locks it), so every write
 *    goes through this object. It matters most there because PGlite runs in this thread: a query
 *    served from memory leaves the event loop free for other requests;
 *  - on PostgreSQL only while it hears the database's change notifications (every write to a
 *    record table, from any process, NOTIFYs `kiln_catalog`: migration 3), on a connection of its
 *    own that it checks every 2 s. A change made by another process (a worker) is seen once its
 *    notification arrives, a few milliseconds after that process's commit; while the connection
 *    is down nothing is served from memory. It starts with the first *Json read, so workers,
 *    which never serve JSON, do not open it.
 */
import { migrate } from "./migrations.js";
import { openSql, type Sql, type SqlRunner } from "./sql.js";
import { FINAL_STATUSES, imsTime, isUuid, type JobRecord, type JobStatus, type RecordKind, type RecordOf, type RemoteBuildNodeRecord } from "./records.js";

const TABLES: Record<RecordKind, string> = { recipes: "recipes", images: "images", "public-keys": "public_keys", jobs: "jobs" };

export interface WorkerInfo {
  name: string;
  host: string;
  pid: number;
  version: string;
  concurrency: number;
}

export interface WorkerRow extends WorkerInfo {
  running: number;
  started: string;
  last_seen: string;
  stopped: string | null;
  alive: boolean;
}

export interface LogChunk {
  seq: number;
  text: string;
}

export interface JobFilter {
  statuses?: string[];
  jobType?: string;
  createdBefore?: Date;
}

/**
 * Served JSON by kind: all the records of a kind once it was loaded (fill), its lists, and
 * records read one by one. A write evicts the records it touched and the kind's lists; drop()
 * forgets a kind. A read takes gen() before it queries and set() keeps its result only if no
 * write of the kind happened meanwhile.
 */
class JsonCache {
  private readonly entries = new Map<string, Map<string, string>>();
  private readonly generation = new Map<string, number>();
  /** The generation at which a kind was filled: it is complete while no write happened since. */
  private readonly complete = new Map<string, number>();
  /** Kinds filled since their last drop(): the records kept stay valid across evictions. */
  private readonly filledKinds = new Set<string>();
  private static readonly MAX = 50_000;

  get(kind: RecordKind, key: string): string | undefined {
    return this.entries.get(kind)?.get(key);
  }

  /** Whether every record of the kind is in memory (fill() and no write since). */
  loaded(kind: RecordKind): boolean {
    return this.complete.get(kind) === this.gen(kind);
  }

  /** Whether the kind was filled since it was last dropped. */
  filled(kind: RecordKind): boolean {
    return this.filledKinds.has(kind);
  }

  fill(kind: RecordKind, entries: Array<[string, string]>, gen: number): void {
    if (gen !== this.gen(kind)) return;
    const m = this.entries.get(kind) ?? new Map<string, string>();
    for (const [k, v] of entries) m.set(k, v);
    this.entries.set(kind, m);
    this.complete.set(kind, gen);
    this.filledKinds.add(kind);
  }

  /** Taken before a read; set() keeps its result only if no write happened meanwhile. */
  gen(kind: RecordKind): number {
    return this.generation.get(kind) ?? 0;
  }

  set(kind: RecordKind, key: string, value: string, gen: number): void {
    if (gen !== this.gen(kind)) return;
    let m = this.entries.get(kind);
    if (!m) this.entries.set(kind, (m = new Map()));
    if (m.size >= JsonCache.MAX) m.clear();
    m.set(key, value);
  }

  /** Forgets one record (live or deleted) and the kind's lists. */
  evict(kind: RecordKind, id: string): void {
    this.generation.set(kind, this.gen(kind) + 1);
    const m = this.entries.get(kind);
    if (!m) return;
    const lower = id.toLowerCase();
    for (const key of [`false:${lower}`, `true:${lower}`, "list:false", "list:true"]) m.delete(key);
  }

  drop(kind: RecordKind): void {
    this.generation.set(kind, this.gen(kind) + 1);
    this.entries.delete(kind);
    this.filledKinds.delete(kind);
  }

  dropAll(): void {
    for (const kind of Object.keys(TABLES) as RecordKind[]) this.drop(kind);
  }
}

const KIND_OF_TABLE = new Map(Object.entries(TABLES).map(([kind, table]) => [table, kind as RecordKind]));

export class Catalog {
  private readonly cache = new JsonCache();
  /** Whether served JSON may come from memory (see the file's comment). */
  private cacheLive: boolean;
  private stopWatch: (() => Promise<void>) | undefined;

  private constructor(readonly sql: Sql) {
    this.cacheLive = sql.dialect === "pglite";
  }

  /** Called by every method that writes records of `kind`: the record `id`, or any. */
  private changed(kind: RecordKind, id?: string): void {
    if (id) this.cache.evict(kind, id);
    else this.cache.drop(kind);
  }

  /** The cache when it may be read now; on PostgreSQL the first call starts the change watch. */
  private readCache(): JsonCache | undefined {
    if (this.cacheLive) return this.cache;
    if (!this.stopWatch && this.sql.watch) {
      this.stopWatch = this.sql.watch(
        "kiln_catalog",
        (payload) => {
          // "<table> <id>" for a row, "<table>" for TRUNCATE (migration 3).
          const [table, id] = payload.split(" ");
          const kind = KIND_OF_TABLE.get(table!);
          if (!kind) this.cache.dropAll();
          else this.changed(kind, id);
        },
        (live) => {
          // Whatever was read before (or while nothing was heard) may be stale: start empty.
          this.cache.dropAll();
          this.cacheLive = live;
        },
      );
    }
    return undefined;
  }

  /** Opens and migrates the catalog: PGlite in dataDir/catalog when url is undefined. */
  static async open(url: string | undefined, dataDir: string): Promise<Catalog> {
    const sql = await openSql(url, dataDir);
    try {
      await migrate(sql);
    } catch (e) {
      await sql.close();
      throw e;
    }
    return new Catalog(sql);
  }

  static async fromSql(sql: Sql): Promise<Catalog> {
    await migrate(sql);
    return new Catalog(sql);
  }

  get dialect(): Sql["dialect"] {
    return this.sql.dialect;
  }

  async close(): Promise<void> {
    await this.stopWatch?.();
    return this.sql.close();
  }

  // --- records -------------------------------------------------------------------------------

  private live(deleted: boolean): string {
    return deleted ? "deleted IS NOT NULL" : "deleted IS NULL";
  }

  /** The JSON array of a collection, in insertion order. */
  async listJson(kind: RecordKind, deleted = false): Promise<string> {
    const key = `list:${deleted}`;
    const cache = this.readCache();
    const hit = cache?.get(kind, key);
    if (hit !== undefined) return hit;
    const gen = cache?.gen(kind) ?? 0;
    const where = kind === "jobs" ? "true" : this.live(deleted);
    const rows = await this.sql.query<{ body: string | null }>(`SELECT coalesce(json_agg(doc ORDER BY seq), '[]')::text AS body FROM ${TABLES[kind]} WHERE ${where}`);
    const body = rows[0]?.body ?? "[]";
    cache?.set(kind, key, body, gen);
    return body;
  }

  async list<K extends RecordKind>(kind: K, deleted = false, runner: SqlRunner = this.sql): Promise<Array<RecordOf[K]>> {
    const where = kind === "jobs" ? "true" : this.live(deleted);
    const rows = await runner.query<{ doc: RecordOf[K] }>(`SELECT doc FROM ${TABLES[kind]} WHERE ${where} ORDER BY seq`);
    return rows.map((r) => r.doc);
  }

  async getJson(kind: RecordKind, id: string, deleted = false): Promise<string | undefined> {
    if (!isUuid(id)) return undefined;
    const key = `${kind === "jobs" ? false : deleted}:${id.toLowerCase()}`;
    const cache = this.readCache();
    if (cache) {
      // The first read of a kind loads all its records (one query; 10,000 images are a few MB).
      // After that a GET by id is served from memory: a write evicts only the records it
      // touched, and while the kind is complete an unknown id is a miss at once.
      if (!cache.filled(kind)) await this.loadKind(kind);
      const hit = cache.get(kind, key);
      if (hit !== undefined || cache.loaded(kind)) return hit;
    }
    const gen = cache?.gen(kind) ?? 0;
    const where = kind === "jobs" ? "true" : this.live(deleted);
    const rows = await this.sql.query<{ body: string }>(`SELECT doc::text AS body FROM ${TABLES[kind]} WHERE id = $1 AND ${where}`, [id]);
    const body = rows[0]?.body;
    if (body !== undefined) cache?.set(kind, key, body, gen);
    return body;
  }

  private async loadKind(kind: RecordKind): Promise<void> {
    const cache = this.cache;
    const gen = cache.gen(kind);
    const deletedCol = kind === "jobs" ? "false" : "deleted IS NOT NULL";
    const rows = await this.sql.query<{ id: string; dead: boolean; body: string }>(`SELECT id::text AS id, ${deletedCol} AS dead, doc::text AS body FROM ${TABLES[kind]}`);
    cache.fill(kind, rows.map((r) => [`${r.dead}:${r.id}`, r.body]), gen);
  }

  async get<K extends RecordKind>(kind: K, id: string, deleted = false, runner: SqlRunner = this.sql): Promise<RecordOf[K] | undefined> {
    if (!isUuid(id)) return undefined;
    const where = kind === "jobs" ? "true" : this.live(deleted);
    const rows = await runner.query<{ doc: RecordOf[K] }>(`SELECT doc FROM ${TABLES[kind]} WHERE id = $1 AND ${where}`, [id]);
    return rows[0]?.doc;
  }

  async insert<K extends RecordKind>(kind: K, doc: RecordOf[K]): Promise<RecordOf[K]> {
    await this.sql.query(`INSERT INTO ${TABLES[kind]} (id, doc) VALUES ($1, $2)`, [doc.id, JSON.stringify(doc)]);
    this.changed(kind, doc.id);
    return doc;
  }

  /**
   * Reads one record under a row lock, lets `change` return its new form (or undefined to leave
   * it), writes it. `change` may throw to refuse; nothing is written then.
   */
  async update<K extends RecordKind>(
    kind: K,
    id: string,
    change: (doc: RecordOf[K], tx: SqlRunner) => Promise<RecordOf[K] | undefined> | RecordOf[K] | undefined,
    deleted = false,
  ): Promise<RecordOf[K] | undefined> {
    if (!isUuid(id)) return undefined;
    const where = kind === "jobs" ? "true" : this.live(deleted);
    let wrote = false;
    const result = await this.sql.transaction(async (tx) => {
      const rows = await tx.query<{ doc: RecordOf[K] }>(`SELECT doc FROM ${TABLES[kind]} WHERE id = $1 AND ${where} FOR UPDATE`, [id]);
      const doc = rows[0]?.doc;
      if (!doc) return undefined;
      const next = await change(doc, tx);
      if (next === undefined) return doc;
      await tx.query(`UPDATE ${TABLES[kind]} SET doc = $2 WHERE id = $1`, [id, JSON.stringify(next)]);
      this.changed(kind, id);
      wrote = true;
      return next;
    });
    if (wrote) this.changed(kind, id); // again after COMMIT: nothing read during the transaction stays
    return result;
  }

  /** Moves a live record to the deleted ones, storing `doc` (which carries its `deleted` time). */
  async markDeleted(kind: Exclude<RecordKind, "jobs">, id: string, doc: RecordOf[typeof kind]): Promise<boolean> {
    const rows = await this.sql.query(`UPDATE ${TABLES[kind]} SET doc = $2, deleted = now() WHERE id = $1 AND deleted IS NULL RETURNING id`, [id, JSON.stringify(doc)]);
    this.changed(kind, id);
    return rows.length > 0;
  }

  async markUndeleted(kind: Exclude<RecordKind, "jobs">, id: string, doc: RecordOf[typeof kind]): Promise<boolean> {
    const rows = await this.sql.query(`UPDATE ${TABLES[kind]} SET doc = $2, deleted = NULL WHERE id = $1 AND deleted IS NOT NULL RETURNING id`, [id, JSON.stringify(doc)]);
    this.changed(kind, id);
    return rows.length > 0;
  }

  /** Removes a record for good (`deleted` chooses which side it must be on). */
  async remove(kind: RecordKind, id: string, deleted = false): Promise<boolean> {
    if (!isUuid(id)) return false;
    const where = kind === "jobs" ? "true" : this.live(deleted);
    const rows = await this.sql.query(`DELETE FROM ${TABLES[kind]} WHERE id = $1 AND ${where} RETURNING id`, [id]);
    this.changed(kind, id);
    if (kind === "jobs" && rows.length > 0) await this.sql.query("DELETE FROM job_logs WHERE job_id = $1", [id]);
    return rows.length > 0;
  }

  /** Live records of a kind whose link path is `path`. */
  async idsWithLink(kind: "recipes" | "images", path: string): Promise<string[]> {
    const rows = await this.sql.query<{ id: string }>(`SELECT id::text AS id FROM ${TABLES[kind]} WHERE doc->'link'->>'path' = $1 AND deleted IS NULL`, [path]);
    return rows.map((r) => r.id);
  }

  async count(kind: RecordKind): Promise<number> {
    const rows = await this.sql.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${TABLES[kind]}`);
    return rows[0]?.n ?? 0;
  }

  // --- jobs ----------------------------------------------------------------------------------

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
   * Takes a queued job for a worker: only a job in `creating` with no worker can be claimed, so a
   * message delivered twice runs once. Returns the job, now carrying the worker's name.
   */
  async claimJob(id: string, worker: string): Promise<JobRecord | undefined> {
    return this.sql.transaction(async (tx) => {
      const rows = await tx.query<{ doc: JobRecord }>("SELECT doc FROM jobs WHERE id = $1 AND worker IS NULL AND status = 'creating' FOR UPDATE", [id]);
      const doc = rows[0]?.doc;
      if (!doc) return undefined;
      const now = imsTime();
      const next: JobRecord = { ...doc, kiln: { ...doc.kiln, worker, attempt: doc.kiln.attempt + 1, started: doc.kiln.started ?? now } };
      await tx.query("UPDATE jobs SET doc = $2, worker = $3 WHERE id = $1", [id, JSON.stringify(next), worker]);
      this.changed("jobs", id);
      return next;
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
    if (changed && (patch.releaseWorker || FINAL_STATUSES.includes(status))) await this.sql.query("UPDATE jobs SET worker = NULL WHERE id = $1", [id]);
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
  async jobsToStop(ids: string[]): Promise<string[]> {
    if (ids.length === 0) return [];
    const rows = await this.sql.query<{ id: string }>(
      `SELECT id::text AS id FROM jobs WHERE id = ANY($1::uuid[])
         AND NOT coalesce((doc->'kiln'->>'cancel_requested')::boolean, false) AND status NOT IN ('success', 'error')`,
      [ids],
    );
    const keep = new Set(rows.map((r) => r.id));
    return ids.filter((id) => !keep.has(id));
  }

  /**
   * Running jobs whose worker has not been heard from for `timeoutSeconds` (or never registered,
   * or said it stopped). Uses the database's clock, so workers' clocks do not matter.
   */
  async orphanedJobs(timeoutSeconds: number): Promise<Array<{ job: JobRecord; worker: string; lastSeen: string | null; queueId: string | null }>> {
    const rows = await this.sql.query<{ doc: JobRecord; worker: string; last_seen: Date | null; queue_id: string | null }>(
      `SELECT j.doc, j.worker, w.last_seen, j.queue_id FROM jobs j LEFT JOIN workers w ON w.name = j.worker
       WHERE j.worker IS NOT NULL AND j.status NOT IN ('success', 'error')
         AND (w.name IS NULL OR w.stopped IS NOT NULL OR w.last_seen < now() - make_interval(secs => $1))`,
      [timeoutSeconds],
    );
    return rows.map((r) => ({ job: r.doc, worker: r.worker, lastSeen: r.last_seen ? new Date(r.last_seen).toISOString() : null, queueId: r.queue_id }));
  }

  /**
   * Takes a job away from a worker thought dead; false when someone else already did (another
   * reaper) or the worker is no longer on it.
   */
  async releaseJob(id: string, worker: string): Promise<boolean> {
    const rows = await this.sql.query("UPDATE jobs SET worker = NULL WHERE id = $1 AND worker = $2 RETURNING id", [id, worker]);
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
  async waitingJobs(seconds: number): Promise<Array<{ id: string; jobType: JobRecord["job_type"]; queueId: string | null }>> {
    const rows = await this.sql.query<{ id: string; job_type: JobRecord["job_type"]; queue_id: string | null }>(
      `SELECT id::text AS id, job_type, queue_id FROM jobs
       WHERE status = 'creating' AND worker IS NULL
         AND coalesce((doc->'kiln'->>'status_since')::timestamptz, created) < now() - make_interval(secs => $1)
       ORDER BY seq`,
      [seconds],
    );
    return rows.map((r) => ({ id: r.id, jobType: r.job_type, queueId: r.queue_id }));
  }

  /**
   * How many jobs each type has in each status ("create/success"), and how many wait for a worker
   * ("create/waiting": `creating` and unclaimed), in one query, for the metrics scrape.
   */
  async jobCounts(): Promise<Map<string, number>> {
    const rows = await this.sql.query<{ job_type: string; status: string; n: number; waiting: number }>(
      "SELECT job_type, status, count(*)::int AS n, (count(*) FILTER (WHERE status = 'creating' AND worker IS NULL))::int AS waiting FROM jobs GROUP BY job_type, status",
    );
    const out = new Map<string, number>();
    for (const r of rows) {
      out.set(`${r.job_type}/${r.status}`, r.n);
      if (r.waiting > 0) out.set(`${r.job_type}/waiting`, r.waiting);
    }
    return out;
  }

  /** Sets a job's queue message id if it is still `from` (compare and set); false when another process changed it. */
  async swapJobQueueId(id: string, from: string | null, to: string): Promise<boolean> {
    const rows = await this.sql.query("UPDATE jobs SET queue_id = $3 WHERE id = $1 AND queue_id IS NOT DISTINCT FROM $2 AND status = 'creating' AND worker IS NULL RETURNING id", [id, from, to]);
    return rows.length > 0;
  }

  // --- remote build nodes --------------------------------------------------------------------

  /** The JSON array of remote build node records, in the order they were first registered. */
  async remoteBuildNodesJson(): Promise<string> {
    const rows = await this.sql.query<{ body: string | null }>("SELECT coalesce(json_agg(doc ORDER BY seq), '[]')::text AS body FROM remote_build_nodes");
    return rows[0]?.body ?? "[]";
  }

  async remoteBuildNodes(): Promise<RemoteBuildNodeRecord[]> {
    const rows = await this.sql.query<{ doc: RemoteBuildNodeRecord }>("SELECT doc FROM remote_build_nodes ORDER BY seq");
    return rows.map((r) => r.doc);
  }

  async remoteBuildNode(xname: string): Promise<RemoteBuildNodeRecord | undefined> {
    const rows = await this.sql.query<{ doc: RemoteBuildNodeRecord }>("SELECT doc FROM remote_build_nodes WHERE xname = $1", [xname]);
    return rows[0]?.doc;
  }

  /** Registers a node; registering it again replaces the record and keeps its place (IMS stores a dict by xname). */
  async putRemoteBuildNode(doc: RemoteBuildNodeRecord): Promise<RemoteBuildNodeRecord> {
    await this.sql.query("INSERT INTO remote_build_nodes (xname, doc) VALUES ($1, $2) ON CONFLICT (xname) DO UPDATE SET doc = excluded.doc", [doc.xname, JSON.stringify(doc)]);
    return doc;
  }

  /** Removes one node (hard delete: IMS keeps no deleted remote build nodes); false when unknown. */
  async removeRemoteBuildNode(xname: string): Promise<boolean> {
    const rows = await this.sql.query("DELETE FROM remote_build_nodes WHERE xname = $1 RETURNING xname", [xname]);
    return rows.length > 0;
  }

  async removeAllRemoteBuildNodes(): Promise<void> {
    await this.sql.query("DELETE FROM remote_build_nodes");
  }

  // --- job logs ------------------------------------------------------------------------------

  async appendLog(jobId: string, text: string): Promise<void> {
    if (text === "") return;
    await this.sql.query("INSERT INTO job_logs (job_id, text) VALUES ($1, $2)", [jobId, text]);
  }

  async readLog(jobId: string, afterSeq = 0, limit = 1000): Promise<LogChunk[]> {
    const rows = await this.sql.query<{ seq: string; text: string }>("SELECT seq::text AS seq, text FROM job_logs WHERE job_id = $1 AND seq > $2 ORDER BY seq LIMIT $3", [jobId, afterSeq, limit]);
    return rows.map((r) => ({ seq: Number(r.seq), text: r.text }));
  }

  // --- workers -------------------------------------------------------------------------------

  async heartbeat(w: WorkerInfo, running: number): Promise<void> {
    await this.sql.query(
      `INSERT INTO workers (name, host, pid, version, concurrency, running) VALUES ($1, $2, $3, $4, $5, $6)
       ON CONFLICT (name) DO UPDATE SET last_seen = now(), running = $6, concurrency = $5, stopped = NULL`,
      [w.name, w.host, w.pid, w.version, w.concurrency, running],
    );
  }

  async workerStopped(name: string): Promise<void> {
    await this.sql.query("UPDATE workers SET stopped = now(), running = 0 WHERE name = $1", [name]);
  }

  async workers(timeoutSeconds: number): Promise<WorkerRow[]> {
    const rows = await this.sql.query<WorkerRow & { started: Date; last_seen: Date; stopped: Date | null }>(
      `SELECT name, host, pid, version, concurrency, running, started, last_seen, stopped,
              (stopped IS NULL AND last_seen >= now() - make_interval(secs => $1)) AS alive
       FROM workers ORDER BY started`,
      [timeoutSeconds],
    );
    return rows.map((r) => ({ ...r, started: new Date(r.started).toISOString(), last_seen: new Date(r.last_seen).toISOString(), stopped: r.stopped ? new Date(r.stopped).toISOString() : null }));
  }

  /** Forgets workers stopped or silent for a day. */
  async pruneWorkers(): Promise<void> {
    await this.sql.query("DELETE FROM workers WHERE last_seen < now() - interval '1 day' AND name NOT IN (SELECT worker FROM jobs WHERE worker IS NOT NULL)");
  }
}

function withStatus(doc: JobRecord, status: JobStatus, patch: { kiln?: Partial<JobRecord["kiln"]>; resultant_image_id?: string | null }): JobRecord {
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
