/**
 * The catalog: IMS records (recipes, images, public keys, jobs), job logs and the worker
 * registry, on the SQL layer (PGlite or PostgreSQL, sql.ts). This file holds the records (CRUD
 * and the JSON served from memory, json-cache.ts) and is the one entry point for the rest, each
 * in a file of its own: the job state machine (job-states.ts), remote build nodes
 * (remote-build-nodes.ts), job logs (job-logs.ts) and the worker registry (workers.ts).
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
import { JobLogs } from "./job-logs.js";
import { JobStates } from "./job-states.js";
import { JsonCache } from "./json-cache.js";
import { isUuid, type RecordKind, type RecordOf } from "./records.js";
import { RemoteBuildNodes } from "./remote-build-nodes.js";
import { WorkerRegistry } from "./workers.js";

export type { LogChunk } from "./job-logs.js";
export type { JobFilter } from "./job-states.js";
export type { WorkerInfo, WorkerRow } from "./workers.js";

const TABLES: Record<RecordKind, string> = { recipes: "recipes", images: "images", "public-keys": "public_keys", jobs: "jobs" };

const KIND_OF_TABLE = new Map(Object.entries(TABLES).map(([kind, table]) => [table, kind as RecordKind]));

export class Catalog {
  private readonly cache = new JsonCache(Object.keys(TABLES) as RecordKind[]);
  /** Whether served JSON may come from memory (see the file's comment). */
  private cacheLive: boolean;
  private stopWatch: (() => Promise<void>) | undefined;

  private readonly jobStates: JobStates;
  private readonly remoteNodes: RemoteBuildNodes;
  private readonly jobLogs: JobLogs;
  private readonly workerRegistry: WorkerRegistry;

  private constructor(readonly sql: Sql) {
    this.cacheLive = sql.dialect === "pglite";
    this.jobStates = new JobStates(sql, (kind, id, change) => this.update(kind, id, change), (kind, id) => this.changed(kind, id));
    this.remoteNodes = new RemoteBuildNodes(sql);
    this.jobLogs = new JobLogs(sql);
    this.workerRegistry = new WorkerRegistry(sql);
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

  // --- the other concerns, each in a file of its own; the catalog is their one entry point ----

  // jobs: claims, statuses, the reaper's queries (job-states.ts)
  readonly findJobs: JobStates["findJobs"] = (...a) => this.jobStates.findJobs(...a);
  readonly setJobQueueId: JobStates["setJobQueueId"] = (...a) => this.jobStates.setJobQueueId(...a);
  readonly claimJob: JobStates["claimJob"] = (...a) => this.jobStates.claimJob(...a);
  readonly setJobStatus: JobStates["setJobStatus"] = (...a) => this.jobStates.setJobStatus(...a);
  readonly jobQueueId: JobStates["jobQueueId"] = (...a) => this.jobStates.jobQueueId(...a);
  readonly jobWorker: JobStates["jobWorker"] = (...a) => this.jobStates.jobWorker(...a);
  readonly jobsToStop: JobStates["jobsToStop"] = (...a) => this.jobStates.jobsToStop(...a);
  readonly orphanedJobs: JobStates["orphanedJobs"] = (...a) => this.jobStates.orphanedJobs(...a);
  readonly releaseJob: JobStates["releaseJob"] = (...a) => this.jobStates.releaseJob(...a);
  readonly requeueJob: JobStates["requeueJob"] = (...a) => this.jobStates.requeueJob(...a);
  readonly waitingJobs: JobStates["waitingJobs"] = (...a) => this.jobStates.waitingJobs(...a);
  readonly swapJobQueueId: JobStates["swapJobQueueId"] = (...a) => this.jobStates.swapJobQueueId(...a);
  readonly failWaitingJob: JobStates["failWaitingJob"] = (...a) => this.jobStates.failWaitingJob(...a);

  // remote build nodes (remote-build-nodes.ts)
  readonly remoteBuildNodesJson: RemoteBuildNodes["remoteBuildNodesJson"] = (...a) => this.remoteNodes.remoteBuildNodesJson(...a);
  readonly remoteBuildNodes: RemoteBuildNodes["remoteBuildNodes"] = (...a) => this.remoteNodes.remoteBuildNodes(...a);
  readonly remoteBuildNode: RemoteBuildNodes["remoteBuildNode"] = (...a) => this.remoteNodes.remoteBuildNode(...a);
  readonly putRemoteBuildNode: RemoteBuildNodes["putRemoteBuildNode"] = (...a) => this.remoteNodes.putRemoteBuildNode(...a);
  readonly removeRemoteBuildNode: RemoteBuildNodes["removeRemoteBuildNode"] = (...a) => this.remoteNodes.removeRemoteBuildNode(...a);
  readonly removeAllRemoteBuildNodes: RemoteBuildNodes["removeAllRemoteBuildNodes"] = (...a) => this.remoteNodes.removeAllRemoteBuildNodes(...a);

  // job logs (job-logs.ts)
  readonly appendLog: JobLogs["appendLog"] = (...a) => this.jobLogs.appendLog(...a);
  readonly readLog: JobLogs["readLog"] = (...a) => this.jobLogs.readLog(...a);

  // worker registry (workers.ts)
  readonly heartbeat: WorkerRegistry["heartbeat"] = (...a) => this.workerRegistry.heartbeat(...a);
  readonly workerStopped: WorkerRegistry["workerStopped"] = (...a) => this.workerRegistry.workerStopped(...a);
  readonly runningInstancesOn: WorkerRegistry["runningInstancesOn"] = (...a) => this.workerRegistry.runningInstancesOn(...a);
  readonly workers: WorkerRegistry["workers"] = (...a) => this.workerRegistry.workers(...a);
  readonly pruneWorkers: WorkerRegistry["pruneWorkers"] = (...a) => this.workerRegistry.pruneWorkers(...a);

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
}
