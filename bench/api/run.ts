/**
 * bench/api: requests per second and latency of the IMS API on a real `kiln serve`, with 10,000
 * image records, 50 concurrent clients (autocannon), for GET /v3/images (the whole list, as IMS
 * serves it: no paging) and GET /v3/images/{id} (ids drawn from the 10,000), on the embedded
 * catalog (PGlite) and on PostgreSQL (scripts/postgres-server.sh, or KILN_TEST_DATABASE_URL).
 *
 *   node dist/bench/api/run.js [--seconds 10] [--records 10000] [--connections 50] [--runs 3] [--only pglite|postgres]
 *
 * Targets (single-record GET): p99 < 25 ms and ≥ 1,000 requests/s on this 2-core machine.
 * The load generator shares the machine with the server, as it would in CI. Each route is
 * measured --runs times against the same server; the table gives the median of each figure and
 * the load averages (1 min) seen before and after each catalog's runs. The list is measured twice:
 * as autocannon asks (no compression) and with Accept-Encoding: gzip, as cray's Python client asks.
 */
import { randomUUID } from "node:crypto";
import os from "node:os";
import { mkdtemp, rm } from "node:fs/promises";
import { createRequire } from "node:module";
import path from "node:path";
import { parseArgs } from "node:util";
import { Catalog } from "../../src/catalog/catalog.js";
import { imsTime } from "../../src/catalog/records.js";
import { createToken, startServe } from "../../test/helpers/service-process.js";
import { postgresServer, type TestServer } from "../../test/helpers/servers.js";

interface CannonResult {
  requests: { average: number; total: number };
  latency: { p50: number; p99: number; average: number; max: number };
  non2xx: number;
  errors: number;
}
type Cannon = (opts: Record<string, unknown>) => Promise<CannonResult>;
// autocannon ships no types; only the fields above are read.
const autocannon = createRequire(import.meta.url)("autocannon") as Cannon;

const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "10" },
    records: { type: "string", default: "10000" },
    connections: { type: "string", default: "50" },
    runs: { type: "string", default: "3" },
    only: { type: "string" },
  },
});
const RUNS = Number(values.runs);
const SECONDS = Number(values.seconds);
const RECORDS = Number(values.records);
const CONNECTIONS = Number(values.connections);

/** Inserts `n` image records shaped like a job's (a link, tags), in batches. */
async function seed(catalog: Catalog, n: number): Promise<string[]> {
  const ids: string[] = [];
  for (let done = 0; done < n; ) {
    const batch = Math.min(1000, n - done);
    const rows: string[] = [];
    const params: unknown[] = [];
    for (let i = 0; i < batch; i++) {
      const id = randomUUID();
      ids.push(id);
      const doc = { id, created: imsTime(), name: `image-${done + i}`, link: { path: `s3://boot-images/${id}/manifest.json`, etag: "0123456789abcdef0123456789abcdef", type: "s3" }, arch: "x86_64", metadata: { release: "bookworm", built_by: "bench" } };
      params.push(id, JSON.stringify(doc));
      rows.push(`($${params.length - 1}, $${params.length})`);
    }
    await catalog.sql.query(`INSERT INTO images (id, doc) VALUES ${rows.join(", ")}`, params);
    done += batch;
  }
  return ids;
}

interface Row {
  catalog: string;
  route: string;
  rps: number;
  p50: number;
  p99: number;
  errors: number;
  bytes?: number;
  /** Each run's p99, to show the spread behind the median. */
  p99s: number[];
  load: string;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

const load1 = () => os.loadavg()[0]!.toFixed(1);

async function measure(catalogName: string, database: string | undefined): Promise<Row[]> {
  const dir = await mkdtemp("/var/tmp/kiln-bench-api-");
  const dataDir = path.join(dir, "data");
  try {
    const catalog = await Catalog.open(database, dataDir);
    if (database) await catalog.sql.query("TRUNCATE images");
    const t0 = Date.now();
    const ids = await seed(catalog, RECORDS);
    process.stderr.write(`bench/api: ${catalogName}: ${RECORDS} image records in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
    await catalog.close();
    const token = await createToken(dataDir, "read-only");
    const serve = await startServe(["--data-dir", dataDir, "--no-worker", ...(database ? ["--database", database] : [])]);
    const headers = { authorization: `Bearer ${token}` };
    try {
      const listBytes = (await (await fetch(`${serve.url}/v3/images`, { headers })).text()).length;
      const gzipBytes = Number((await fetch(`${serve.url}/v3/images`, { headers: { ...headers, "accept-encoding": "gzip" } })).headers.get("content-length"));
      const rows: Row[] = [];
      const run = async (route: string, opts: Record<string, unknown>, bytes?: number) => {
        const before = load1();
        await autocannon({ url: serve.url, connections: CONNECTIONS, duration: 2, headers, ...opts }); // warm-up
        const rs: CannonResult[] = [];
        for (let i = 0; i < RUNS; i++) rs.push(await autocannon({ url: serve.url, connections: CONNECTIONS, duration: SECONDS, headers, ...opts }));
        const p99s = rs.map((r) => r.latency.p99);
        rows.push({
          catalog: catalogName,
          route,
          rps: Math.round(median(rs.map((r) => r.requests.average))),
          p50: median(rs.map((r) => r.latency.p50)),
          p99: median(p99s),
          p99s,
          errors: rs.reduce((n, r) => n + r.non2xx + r.errors, 0),
          bytes,
          load: `${before} → ${load1()}`,
        });
        process.stderr.write(`bench/api: ${catalogName} ${route}: p99 ${p99s.join(", ")} ms\n`);
      };
      await run("GET /v3/images", { url: `${serve.url}/v3/images` }, listBytes);
      await run("GET /v3/images, gzip", { url: `${serve.url}/v3/images`, headers: { ...headers, "accept-encoding": "gzip" } }, gzipBytes);
      let n = 0;
      await run("GET /v3/images/{id}", {
        requests: [{ method: "GET", setupRequest: (req: Record<string, unknown>) => ({ ...req, path: `/v3/images/${ids[n++ % ids.length]}` }) }],
      });
      return rows;
    } finally {
      await serve.stop();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const rows: Row[] = [];
  if (values.only !== "postgres") rows.push(...(await measure("PGlite", undefined)));
  if (values.only !== "pglite") {
    let pg: TestServer | undefined;
    try {
      pg = await postgresServer();
      rows.push(...(await measure("PostgreSQL", pg.env.KILN_TEST_DATABASE_URL)));
    } finally {
      await pg?.stop();
    }
  }
  const out = [
    `bench/api: ${RECORDS} images, ${CONNECTIONS} connections, median of ${RUNS} runs of ${SECONDS} s per route, ${os.cpus().length} CPUs`,
    "| catalog | route | req/s | p50 ms | p99 ms (each run) | non-2xx/errors | load avg | target |",
    "|---|---|---|---|---|---|---|---|",
  ];
  for (const r of rows) {
    const single = r.route.endsWith("{id}");
    const target = single ? `p99 < 25 ms: ${r.p99 < 25 ? "ok" : "MISSED"}; ≥ 1000 req/s: ${r.rps >= 1000 ? "ok" : "MISSED"}` : `(${(r.bytes! / 1e6).toFixed(2)} MB per response)`;
    out.push(`| ${r.catalog} | ${r.route} | ${r.rps} | ${r.p50} | ${r.p99} (${r.p99s.join(", ")}) | ${r.errors} | ${r.load} | ${target} |`);
  }
  process.stdout.write(out.join("\n") + "\n");
}

await main();
