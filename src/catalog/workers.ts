/**
 * The worker registry: one row per worker process (instance), with its heartbeat. The reaper
 * (jobs/worker.ts) reads it through JobStates.orphanedJobs; GET /v3/workers lists it.
 */
import type { Sql } from "./sql.js";

export interface WorkerInfo {
  name: string;
  /** Random per process: a worker restarted under the same name is another instance. */
  instance: string;
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

export class WorkerRegistry {
  constructor(private readonly sql: Sql) {}

  /**
   * Registers this process or says it is alive, by its instance. A row marked stopped stays
   * stopped: a process the reaper was told is dead does not come back to life by its heartbeat
   * (its jobs may already be someone else's).
   */
  async heartbeat(w: WorkerInfo, running: number): Promise<void> {
    await this.sql.query(
      `INSERT INTO workers (instance, name, host, pid, version, concurrency, running) VALUES ($1, $2, $3, $4, $5, $6, $7)
       ON CONFLICT (instance) DO UPDATE SET last_seen = now(), running = $7, concurrency = $6`,
      [w.instance, w.name, w.host, w.pid, w.version, w.concurrency, running],
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
    const rows = await this.sql.query<WorkerRow & { started: Date; last_seen: Date; stopped: Date | null }>(
      `SELECT name, instance, host, pid, version, concurrency, running, started, last_seen, stopped,
              (stopped IS NULL AND last_seen >= now() - make_interval(secs => $1)) AS alive
       FROM workers ORDER BY started`,
      [timeoutSeconds],
    );
    return rows.map((r) => ({ ...r, started: new Date(r.started).toISOString(), last_seen: new Date(r.last_seen).toISOString(), stopped: r.stopped ? new Date(r.stopped).toISOString() : null }));
  }

  /** Forgets workers stopped or silent for a day. */
  async pruneWorkers(): Promise<void> {
    await this.sql.query("DELETE FROM workers WHERE last_seen < now() - interval '1 day' AND instance NOT IN (SELECT worker_instance FROM jobs WHERE worker_instance IS NOT NULL)");
  }
}
