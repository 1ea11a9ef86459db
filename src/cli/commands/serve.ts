/**
 * `kiln serve`: the IMS API, the catalog (PGlite in --data-dir unless --database), the object
 * store (a directory in --data-dir unless --store), the queue on the catalog's database, and one
 * in-process worker (unless --no-worker). Runs until SIGINT/SIGTERM, then stops taking requests
 * and jobs, cancels running builds (they end `error`) and closes everything in order.
 *
 * `kiln worker` is the same minus the API: more build capacity on other machines, sharing the
 * catalog (PostgreSQL) and the store (S3) by URL.
 */
import { readFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { secureDataDir } from "../../host/data-dir.js";
import { Catalog } from "../../catalog/catalog.js";
import { BUCKETS } from "../../catalog/objects.js";
import { redact } from "../../catalog/sql.js";
import { COMMAND_SETTINGS, resolveSettings, type Listen, type ServiceSettings } from "../../config/settings.js";
import { PgBossQueue } from "../../jobs/queue.js";
import { Reaper, Worker } from "../../jobs/worker.js";
import { FsStore } from "../../store/fs-store.js";
import type { ObjectStore } from "../../store/object-store.js";
import { openStore } from "../../store/open-store.js";
import { KILN_VERSION } from "../../version.js";
import { buildableArches } from "../../host/arches.js";
import type { CommandIo } from "../io.js";

type Say = (m: string) => void;

function sayer(io: CommandIo): Say {
  return (m) => io.stderr.write(`kiln: ${m}\n`);
}

/** Opens catalog, store and queue, closing what was opened if a later one fails. */
async function openBackends(s: Pick<ServiceSettings, "database" | "dataDir" | "store" | "storeRetry">, say: Say, publicUrl?: string): Promise<{ catalog: Catalog; store: ObjectStore; queue: PgBossQueue; close(): Promise<void> }> {
  // Before the catalog opens (a loose data dir from an older Kiln) and after (PGlite makes its
  // files 0666): host/data-dir.ts.
  const loose = await secureDataDir(s.dataDir);
  if (loose > 0) say(`data dir ${s.dataDir}: made ${loose} files and folders private to this user (tokens and keys 0600, the catalog not readable by others)`);
  const catalog = await Catalog.open(s.database, s.dataDir);
  let store: ObjectStore | undefined;
  try {
    store = await openStore(s.store, { publicUrl, retrySeconds: s.storeRetry });
    for (const b of BUCKETS) await store.ensureBucket(b);
    const queue = await PgBossQueue.start(catalog.sql);
    await secureDataDir(s.dataDir);
    say(`catalog ${catalog.dialect === "pglite" ? `PGlite in ${catalog.sql.where}` : `PostgreSQL ${catalog.sql.where}`}; store ${store.url}`);
    const opened = store;
    return {
      catalog,
      store: opened,
      queue,
      async close() {
        await queue.stop().catch(() => {});
        await opened.close().catch(() => {});
        await catalog.close();
        await secureDataDir(s.dataDir).catch(() => {});
      },
    };
  } catch (e) {
    await store?.close().catch(() => {});
    await catalog.close().catch(() => {});
    throw e;
  }
}

const WILDCARD_HOSTS = new Set(["0.0.0.0", "::", "::0"]);

/**
 * The URL the service is reachable at when --public-url does not say: the listen address with the
 * port it got (--listen …:0 picks one), https with --tls-cert. A wildcard address is no place to
 * connect to, so it becomes this machine's host name (as --ssh-host defaults to it).
 */
export function defaultPublicUrl(listen: Listen, port: number, tls: boolean, hostname = os.hostname()): string {
  const host = WILDCARD_HOSTS.has(listen.host) ? hostname : listen.host;
  return `${tls ? "https" : "http"}://${host.includes(":") ? `[${host}]` : host}:${port}`;
}

function untilAborted(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => (signal.aborted ? resolve() : signal.addEventListener("abort", () => resolve(), { once: true })));
}

/** A --sign-key gpg cannot sign with (unknown, passphrase-protected) fails the start, not every job after it. */
async function checkSignKey(key: string | undefined, say: Say): Promise<void> {
  if (!key) return;
  const { openSigner } = await import("../../streams/sign.js");
  const signer = await openSigner(key);
  try {
    await signer.detachSign("kiln: can this key sign?\n");
    say(`jobs sign their images' SHA256SUMS with ${signer.fingerprint} (--sign-key)`);
  } finally {
    await signer.close();
  }
}

async function workerOptions(s: ServiceSettings, say: Say) {
  await checkSignKey(s.signKey, say);
  return {
    arches: s.workerArch.length > 0 ? s.workerArch : await buildableArches(),
    archWaitSeconds: s.archWait,
    name: s.workerName,
    concurrency: s.concurrency,
    heartbeatSeconds: s.heartbeat,
    timeoutSeconds: s.workerTimeout,
    retries: s.jobRetries,
    workDir: s.workDir,
    cacheDir: s.cacheDir,
    verify: s.verify,
    maxRecipeSize: s.maxRecipeSize,
    session: { listen: s.sshListen, host: s.sshHost, clusterHost: s.sshClusterHost, loginGraceSeconds: s.sshLoginGrace, timeoutSeconds: s.sessionTimeout },
    siteCas: s.siteCa,
    signKey: s.signKey,
    pollSeconds: Math.min(1, s.heartbeat),
    say,
  };
}

export async function serveCommand(opts: Record<string, unknown>, io: CommandIo): Promise<number> {
  const s = resolveSettings(COMMAND_SETTINGS.serve, opts) as ServiceSettings;
  const say = sayer(io);
  const scheme = s.tlsCert ? "https" : "http";
  const hostForUrl = s.listen.host.includes(":") ? `[${s.listen.host}]` : s.listen.host;
  // A file store's presigned URLs are answered by this service, at <public-url>/objects/ (a
  // given --public-url wins over KILN_STORE_PUBLIC_URL, which wins over the listen address).
  const backends = await openBackends(s, say, s.publicUrl ? `${s.publicUrl}/objects` : undefined);
  const { Metrics } = await import("../../api/metrics.js");
  // One set of metrics for the API, the in-process worker and the store they write through.
  const metrics = new Metrics();
  const { catalog, queue } = backends;
  const store = metrics.countWrites(backends.store);
  let worker: Worker | undefined;
  let reaper: Reaper | undefined;
  let app: Awaited<ReturnType<typeof import("../../api/app.js").buildApp>> | undefined;
  try {
    const { buildApp } = await import("../../api/app.js");
    const { FileTokenVerifier, listTokens, tokensFile } = await import("../../api/tokens.js");
    const https = s.tlsCert && s.tlsKey ? { cert: await readFile(s.tlsCert), key: await readFile(s.tlsKey) } : undefined;
    app = await buildApp({
      catalog,
      store,
      queue,
      tokens: new FileTokenVerifier(tokensFile(s.dataDir)),
      settings: { maxRecipeSize: s.maxRecipeSize, scratchDir: path.join(s.dataDir, "tmp"), workerTimeout: s.workerTimeout },
      logger: { level: s.logLevel },
      https,
      metrics,
      metricsAccess: s.metrics,
      streams: s.streams === "off" ? undefined : {
        access: s.streams,
        labels: s.streamsLabels,
        keep: s.streamsKeep,
        signer: s.streamsSignKey ? await (await import("../../streams/sign.js")).openSigner(s.streamsSignKey) : undefined,
        ...(s.streamsBootloaders ? { bootloaders: s.streamsBootloaders } : {}),
      },
    });
    await app.listen({ host: s.listen.host, port: s.listen.port });
    const port = (app.server.address() as { port: number }).port;
    if (store instanceof FsStore) {
      const objects = store.setDefaultPublicUrl(`${s.publicUrl ?? defaultPublicUrl(s.listen, port, https !== undefined)}/objects`);
      say(`presigned download URLs point at ${objects}/${s.publicUrl ? "" : " (--public-url: the address clients reach this service at, if not that)"}`);
    }
    if (s.worker) {
      worker = new Worker(catalog, store, queue, { ...(await workerOptions(s, say)), observer: metrics });
      await worker.start();
    } else {
      reaper = new Reaper(catalog, queue, { timeoutSeconds: s.workerTimeout, retries: s.jobRetries, archWaitSeconds: s.archWait, say });
      reaper.start(s.heartbeat);
      say("no in-process worker (--no-worker): jobs wait for `kiln worker` processes");
    }
    if ((await listTokens(s.dataDir)).length === 0) say(`no API tokens yet: make one with \`kiln token create --role admin --data-dir ${s.dataDir}\``);
    // Tests and scripts read the URL from this line.
    io.stdout.write(`kiln ${KILN_VERSION}: listening on ${scheme}://${hostForUrl}:${port}\n`);
    await untilAborted(io.signal);
    say("stopping: no new requests or jobs; running jobs are cancelled");
    return 0;
  } finally {
    reaper?.stop();
    await app?.close().catch(() => {});
    await worker?.stop("the service is stopping (SIGTERM/SIGINT)").catch(() => {});
    await backends.close();
  }
}

export async function workerCommand(opts: Record<string, unknown>, io: CommandIo): Promise<number> {
  const s = resolveSettings(COMMAND_SETTINGS.worker, opts) as ServiceSettings;
  const say = sayer(io);
  if (s.database === undefined) say(`no --database: using the embedded catalog in ${s.dataDir} (only possible when no kiln serve uses it; use PostgreSQL to share)`);
  else say(`catalog ${redact(s.database)}`);
  const backends = await openBackends(s, say);
  const worker = new Worker(backends.catalog, backends.store, backends.queue, await workerOptions(s, say));
  try {
    await worker.start();
    io.stdout.write(`kiln ${KILN_VERSION}: worker ${s.workerName} running\n`);
    await untilAborted(io.signal);
    say("stopping: running jobs are cancelled");
    return 0;
  } finally {
    await worker.stop("the worker is stopping (SIGTERM/SIGINT)").catch(() => {});
    await backends.close();
  }
}
