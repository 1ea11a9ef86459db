/**
 * The worker registry: one row per worker process (instance), with its heartbeat. The reaper
 * (jobs/worker.ts) reads it through JobStates.orphanedJobs; GET /v3/workers lists it.
 */
import type { Arch } from "./records.js";
import type { Sql } from "./sql.js";

export interface WorkerInfo {
  name: string;
  /** Random per process: a worker restarted under the same name is another instance. */
  instance: string;
  host: string;
  pid: number;
  version: string;
  concurrency: number;
  /** The image arches it builds, native first. */
  arches: Arch[];
}

export interface WorkerRow extends WorkerInfo {
  running: number;
  started: string;
  last_seen: string;
  stopped: string | null;
  alive: boolean;
}

export class WorkerRegistry {
  constructor(private readonly sql: Sql) {}

  /**
   * Registers this process or says it is alive, by its instance. A row marked stopped stays
   * stopped: a process the reaper was told is dead does not come back to life by its heartbeat
   * (its jobs may already be someone else's).
   */
  async heartbeat(w: WorkerInfo, running: number): Promise<void> {
    await this.sql.query(
      `INSERT INTO workers (instance, name, host, pid, version, concurrency, running, arches) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
       ON CONFLICT (instance) DO UPDATE SET last_seen = now(), running = $7, concurrency = $6, arches = $8`,
      [w.instance, w.name, w.host, w.pid, w.version, w.concurrency, running, w.arches.join(",")],
    );
  }

  /** A process said goodbye, or was found dead: its jobs go to the reaper at its next sweep. */
  async workerStopped(instance: string): Promise<void> {
    await this.sql.query("UPDATE workers SET stopped = now(), running = 0 WHERE instance = $1 AND stopped IS NULL", [instance]);
  }

  /** The processes on `host` not known to have stopped, other than `except`. */
  async runningInstancesOn(host: string, except: string): Promise<Array<{ instance: string; name: string; pid: number }>> {
    return this.sql.query("SELECT instance, name, pid FROM workers WHERE host = $1 AND instance <> $2 AND stopped IS NULL", [host, except]);
  }

  async workers(timeoutSeconds: number): Promise<WorkerRow[]> {
    const rows = await this.sql.query<Omit<WorkerRow, "arches"> & { arches: string; started: Date; last_seen: Date; stopped: Date | null }>(
      `SELECT name, instance, host, pid, version, concurrency, running, arches, started, last_seen, stopped,
              (stopped IS NULL AND last_seen >= now() - make_interval(secs => $1)) AS alive
       FROM workers ORDER BY started`,
      [timeoutSeconds],
    );
    return rows.map((r) => ({ ...r, arches: r.arches.split(",").filter(Boolean) as Arch[], started: new Date(r.started).toISOString(), last_seen: new Date(r.last_seen).toISOString(), stopped: r.stopped ? new Date(r.stopped).toISOString() : null }));
  }

  /** Forgets workers stopped or silent for a day. */
  async pruneWorkers(): Promise<void> {
    await this.sql.query("DELETE FROM workers WHERE last_seen < now() - interval '1 day' AND instance NOT IN (SELECT worker_instance FROM jobs WHERE worker_instance IS NOT NULL)");
  }
}
