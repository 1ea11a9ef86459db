/**
 * Prometheus metrics (prom-client), all registered here, in one registry per Metrics instance:
 * `kiln serve` makes one and hands it to its app, its in-process worker and its store; tests
 * build many apps, each with its own.
 *
 * Two kinds of metric:
 *  - read from the catalog at scrape time, so they are true for the whole service whichever
 *    process ran the job: jobs by type and status, queue depth, workers alive;
 *  - observed in this process when something happens: HTTP request durations (by route pattern,
 *    never the raw URL, which would make one series per image id), job and stage durations and
 *    stage cache hits and misses (when the in-process worker's jobs and stages end), bytes this
 *    process wrote to the store.
 * A separate `kiln worker` process serves no /metrics: its jobs show up in the catalog metrics,
 * not in the histograms (docs/service.md says so).
 *
 * Label values come from fixed sets (job types, statuses, route patterns, stage names, buckets);
 * nothing a client sends becomes a label.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import fp from "fastify-plugin";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { Catalog } from "../catalog/catalog.js";
import { JOB_STATUSES, JOB_TYPES, type JobType } from "../catalog/records.js";
import type { BuildEvent } from "../engine/events.js";
import type { ObjectStore } from "../store/object-store.js";

/** Who may scrape /metrics: anyone, any token holder (read-only is enough), or nobody (no route). */
export type MetricsAccess = "open" | "token" | "off";

/** Seconds: a stage or job takes from well under a second (cached) to an hour (a big build with boot checks). */
const LONG_BUCKETS = [0.5, 1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600];
/** Seconds: API requests. */
const HTTP_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export class Metrics {
  readonly registry = new Registry();
  private catalog?: Catalog;
  private workerTimeout = 30;

  readonly httpDuration = new Histogram({
    name: "kiln_http_request_duration_seconds",
    help: "HTTP requests by method, route pattern and status code",
    labelNames: ["method", "route", "code"] as const,
    buckets: HTTP_BUCKETS,
    registers: [this.registry],
  });

  readonly jobDuration = new Histogram({
    name: "kiln_job_duration_seconds",
    help: "Jobs run by this process's worker, from claim to end, by type and final status",
    labelNames: ["type", "status"] as const,
    buckets: LONG_BUCKETS,
    registers: [this.registry],
  });

  readonly stageDuration = new Histogram({
    name: "kiln_stage_duration_seconds",
    help: "Build stages of this process's jobs, by stage and whether the cache had it",
    labelNames: ["stage", "cached"] as const,
    buckets: LONG_BUCKETS,
    registers: [this.registry],
  });

  readonly cacheHits = new Counter({
    name: "kiln_cache_hits_total",
    help: "Build stages of this process's jobs taken from the layer cache",
    labelNames: ["stage"] as const,
    registers: [this.registry],
  });

  readonly cacheMisses = new Counter({
    name: "kiln_cache_misses_total",
    help: "Build stages of this process's jobs that had to be built",
    labelNames: ["stage"] as const,
    registers: [this.registry],
  });

  readonly storeWritten = new Counter({
    name: "kiln_store_written_bytes_total",
    help: "Bytes this process stored in the object store (puts and copies), by bucket",
    labelNames: ["bucket"] as const,
    registers: [this.registry],
  });

  constructor() {
    const jobs: Gauge<"type" | "status"> = new Gauge({
      name: "kiln_jobs",
      help: "Jobs in the catalog by type and status (every process's jobs)",
      labelNames: ["type", "status"] as const,
      registers: [this.registry],
      collect: async () => {
        const counts = await this.jobCounts();
        // Every pair is set, 0 included: a status that empties drops to 0 instead of vanishing.
        for (const type of JOB_TYPES) for (const status of JOB_STATUSES) jobs.set({ type, status }, counts.get(`${type}/${status}`) ?? 0);
      },
    });
    const queueDepth: Gauge<"type"> = new Gauge({
      name: "kiln_queue_depth",
      help: "Jobs waiting for a worker (status creating, not claimed), by type",
      labelNames: ["type"] as const,
      registers: [this.registry],
      collect: async () => {
        const counts = await this.jobCounts();
        for (const type of JOB_TYPES) queueDepth.set({ type }, counts.get(`${type}/waiting`) ?? 0);
      },
    });
    const workers: Gauge = new Gauge({
      name: "kiln_workers_alive",
      help: "Workers whose last heartbeat is within --worker-timeout",
      registers: [this.registry],
      collect: async () => {
        if (this.catalog) workers.set((await this.catalog.workers(this.workerTimeout)).filter((w) => w.alive).length);
      },
    });
    collectDefaultMetrics({ register: this.registry, prefix: "kiln_process_" });
    // prom-client names these gauges *_total, which promtool refuses (only counters may end so).
    for (const name of ["nodejs_active_handles_total", "nodejs_active_requests_total", "nodejs_active_resources_total"]) this.registry.removeSingleMetric(`kiln_process_${name}`);
  }

  /** One catalog query per scrape, shared by the gauges that need it. */
  private counts?: Promise<Map<string, number>>;
  private jobCounts(): Promise<Map<string, number>> {
    if (!this.catalog) return Promise.resolve(new Map());
    this.counts ??= this.catalog.jobCounts().finally(() => setImmediate(() => (this.counts = undefined)));
    return this.counts;
  }

  /** Where the scrape-time gauges read from. */
  watchCatalog(catalog: Catalog, workerTimeout: number): void {
    this.catalog = catalog;
    this.workerTimeout = workerTimeout;
  }

  jobEnded(type: JobType, status: "success" | "error", seconds: number): void {
    this.jobDuration.observe({ type, status }, seconds);
  }

  /** Engine events of a job (JobLog hands them over): stage ends feed the stage histogram and the cache counters. */
  buildEvent(e: BuildEvent): void {
    if (e.type !== "stage-end") return;
    this.stageDuration.observe({ stage: e.name, cached: String(e.cached) }, e.seconds);
    (e.cached ? this.cacheHits : this.cacheMisses).inc({ stage: e.name });
  }

  /**
   * The store, counting what put() and copy() write. A Proxy keeps the store's class (serve checks
   * `instanceof FsStore`) and binds every other method to the real store.
   */
  countWrites(store: ObjectStore): ObjectStore {
    const counter = this.storeWritten;
    return new Proxy(store, {
      get(target, prop) {
        const value: unknown = Reflect.get(target, prop, target);
        if (typeof value !== "function") return value;
        if (prop === "put" || prop === "copy") {
          return async (bucket: string, ...rest: unknown[]) => {
            const info = await (value as (...a: unknown[]) => Promise<{ size: number }>).call(target, bucket, ...rest);
            counter.inc({ bucket }, info.size);
            return info;
          };
        }
        return (value as (...a: unknown[]) => unknown).bind(target);
      },
    });
  }
}

/** GET /metrics, and the hook timing every request. */
export const metricsPlugin = fp(
  async (app: FastifyInstance, opts: { metrics: Metrics; access: MetricsAccess }) => {
    const { metrics } = opts;
    app.addHook("onResponse", async (request: FastifyRequest, reply: FastifyReply) => {
      // The pattern (/v3/images/:id), not the URL; requests no route matched share one label.
      const route = request.routeOptions.url ?? "unmatched";
      metrics.httpDuration.observe({ method: request.method, route, code: String(reply.statusCode) }, reply.elapsedTime / 1000);
    });
    if (opts.access === "off") return;
    app.get(
      "/metrics",
      { config: { open: opts.access === "open" }, schema: { hide: true } },
      async (_request, reply) => reply.type(metrics.registry.contentType).send(await metrics.registry.metrics()),
    );
  },
  { name: "metrics", dependencies: ["services"] },
);
