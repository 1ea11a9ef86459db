/**
 * The service's pieces for tests that call inject(): a real catalog (PGlite in a temp dir), a
 * real filesystem store, and a queue that records what it is given (no worker runs).
 */
import type { StreamsOptions } from "../../src/api/streams.js";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { FastifyInstance, LightMyRequestResponse } from "fastify";
import { buildApp } from "../../src/api/app.js";
import type { MetricsAccess } from "../../src/api/metrics.js";
import { StaticTokenVerifier } from "../../src/api/tokens.js";
import { Catalog } from "../../src/catalog/catalog.js";
import { BUCKETS } from "../../src/catalog/objects.js";
import type { JobQueue, Lane, MessageState } from "../../src/jobs/queue.js";
import type { ObjectStore } from "../../src/store/object-store.js";
import { openStore } from "../../src/store/open-store.js";

export const ADMIN = "admin-token";
export const READER = "reader-token";

export class RecordingQueue implements JobQueue {
  sent: Array<{ jobId: string; lane: Lane; queueId: string }> = [];
  dropped: string[] = [];
  async enqueue(jobId: string, lane: Lane): Promise<string> {
    const queueId = `q-${this.sent.length + 1}`;
    this.sent.push({ jobId, lane, queueId });
    return queueId;
  }
  async drop(_l: Lane, queueId: string): Promise<void> {
    this.dropped.push(queueId);
  }
  async messagesFor(lane: Lane, jobIds: string[]): Promise<MessageState[]> {
    return this.sent
      .filter((m) => m.lane === lane && jobIds.includes(m.jobId))
      .map((m) => ({ jobId: m.jobId, queueId: m.queueId, state: this.dropped.includes(m.queueId) ? "failed" : "created", created: new Date(), started: null }));
  }
  async work(): Promise<() => Promise<void>> {
    return async () => {};
  }
  async stop(): Promise<void> {}
}

export interface TestService {
  app: FastifyInstance;
  catalog: Catalog;
  store: ObjectStore;
  queue: RecordingQueue;
  dir: string;
  /** inject() with the admin token (or `token`), JSON body when given. */
  call(method: string, url: string, body?: unknown, token?: string | null): Promise<LightMyRequestResponse>;
  close(): Promise<void>;
}

export async function startTestService(opts: { maxRecipeSize?: number; metricsAccess?: MetricsAccess; streams?: StreamsOptions } = {}): Promise<TestService> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "kiln-api-"));
  const catalog = await Catalog.open(undefined, dir);
  const store = await openStore(`file://${path.join(dir, "objects")}`);
  for (const b of BUCKETS) await store.ensureBucket(b);
  const queue = new RecordingQueue();
  const app = await buildApp({
    catalog,
    store,
    queue,
    tokens: new StaticTokenVerifier({ [ADMIN]: "admin", [READER]: "read-only" }),
    settings: { maxRecipeSize: opts.maxRecipeSize ?? 1024 * 1024, scratchDir: path.join(dir, "tmp"), workerTimeout: 30 },
    ...(opts.metricsAccess ? { metricsAccess: opts.metricsAccess } : {}),
    ...(opts.streams ? { streams: opts.streams } : {}),
  });
  await app.ready();
  return {
    app,
    catalog,
    store,
    queue,
    dir,
    call(method, url, body, token = ADMIN) {
      return app.inject({
        method: method as "GET",
        url,
        headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body !== undefined ? { "content-type": "application/json" } : {}) },
        ...(body !== undefined ? { payload: typeof body === "string" ? body : JSON.stringify(body) } : {}),
      });
    },
    async close() {
      await app.close();
      await store.close();
      await catalog.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
