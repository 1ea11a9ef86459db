/**
 * A job's log lines survive a PostgreSQL restart: the lines a worker writes while the catalog is
 * unreachable reach it, in order, once the server is back (a real server, really stopped).
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import path from "node:path";
import { Catalog } from "../../src/catalog/catalog.js";
import { JobLog } from "../../src/jobs/job-log.js";
import { postgresServer, type TestServer } from "../helpers/servers.js";

let pg: TestServer | undefined;
let catalog: Catalog | undefined;
let dir: string | undefined;
after(async () => {
  await catalog?.close().catch(() => {});
  await pg?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

test("log lines written while PostgreSQL is down are stored once it is back", async () => {
  pg = await postgresServer({ own: true });
  dir = await mkdtemp("/var/tmp/kiln-log-outage-");
  catalog = await Catalog.open(pg.env.KILN_TEST_DATABASE_URL!, path.join(dir, "data"));
  const jobId = randomUUID();
  const log = new JobLog(catalog, jobId, { keepBytes: 1 << 20, retryMinMs: 200, retryMaxMs: 1_000 });
  log.line("before the outage");
  assert.equal(await log.flush(), true);

  await pg.pause();
  for (let i = 1; i <= 3; i++) log.line(`during the outage ${i}`);
  assert.equal(await log.flush(), false, "the server is really down");
  await pg.start();
  log.line("after the outage");
  assert.equal(await log.settle(30_000), true, "the lines reach the catalog once it is back");

  const text = (await catalog.readLog(jobId)).map((c) => c.text).join("");
  const bodies = text.split("\n").filter(Boolean).map((l) => l.slice(9));
  assert.deepEqual(bodies, ["before the outage", "during the outage 1", "during the outage 2", "during the outage 3", "after the outage"]);
});
