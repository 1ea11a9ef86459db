/**
 * The catalog's served-JSON cache on PostgreSQL (scripts/postgres-server.sh): one catalog (the
 * API's) serves from memory while it hears the database's change notifications; another (a
 * worker's) changes records with plain SQL and through its own methods; the first sees every
 * change once its notification arrives, and reads the database while its watch connection is
 * down. Also the migrations on PostgreSQL: triggers, and the lost-message query of the reaper.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import path from "node:path";
import { Catalog } from "../../src/catalog/catalog.js";
import { imsTime, type ImageRecord } from "../../src/catalog/records.js";
import { PgBossQueue } from "../../src/jobs/queue.js";
import { postgresServer, type TestServer } from "../helpers/servers.js";

let pg: TestServer;
let dir: string;
let api: Catalog;
let worker: Catalog;

before(async () => {
  pg = await postgresServer();
  dir = await mkdtemp("/var/tmp/kiln-catalog-cache-");
  const url = pg.env.KILN_TEST_DATABASE_URL!;
  api = await Catalog.open(url, path.join(dir, "api"));
  worker = await Catalog.open(url, path.join(dir, "worker"));
});
after(async () => {
  await api?.close();
  await worker?.close();
  await pg?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function until<T>(what: string, fn: () => Promise<T | undefined | false>, ms = 10000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function image(name: string): ImageRecord {
  return { id: randomUUID(), created: imsTime(), name, link: null, arch: "x86_64", metadata: {} };
}

/** Whether `api` answers from memory: a row changed behind every trigger's back would not show. */
async function servedFromMemory(id: string): Promise<boolean> {
  const before = await api.getJson("images", id);
  await worker.sql.query("ALTER TABLE images DISABLE TRIGGER images_changed");
  try {
    await worker.sql.query(`UPDATE images SET doc = jsonb_set(doc, '{name}', '"silent"') WHERE id = $1`, [id]);
    return (await api.getJson("images", id)) === before;
  } finally {
    await worker.sql.query(`UPDATE images SET doc = $2 WHERE id = $1`, [id, before]);
    await worker.sql.query("ALTER TABLE images ENABLE TRIGGER images_changed");
  }
}

test("another process's changes reach the API's cached JSON once their notification arrives", async () => {
  const a = await worker.insert("images", image("a"));
  assert.equal(JSON.parse((await api.getJson("images", a.id))!).name, "a"); // starts the watch
  await until("the watch to listen", () => servedFromMemory(a.id));

  const other = await worker.insert("images", image("other"));
  await until("the new image", async () => (await api.getJson("images", other.id)) !== undefined);
  assert.ok(await servedFromMemory(other.id));
  await worker.update("images", a.id, (d) => ({ ...d, name: "renamed" }));
  const t0 = Date.now();
  await until("the rename", async () => JSON.parse((await api.getJson("images", a.id))!).name === "renamed");
  assert.ok(Date.now() - t0 < 1000, `seen after ${Date.now() - t0} ms`);
  assert.ok(await servedFromMemory(other.id), "a change evicts the record it touched, not the others");

  const b = image("b");
  assert.ok(!JSON.parse(await api.listJson("images")).some((x: { id: string }) => x.id === b.id));
  await worker.sql.query("INSERT INTO images (id, doc) VALUES ($1, $2)", [b.id, JSON.stringify(b)]);
  await until("the new image in the list", async () => JSON.parse(await api.listJson("images")).some((x: { id: string }) => x.id === b.id));
  await worker.remove("images", b.id);
  await until("the removal", async () => (await api.getJson("images", b.id)) === undefined);
});

test("while its watch connection is down the API reads the database; it listens again by itself", async () => {
  const c = await worker.insert("images", image("c"));
  await api.getJson("images", c.id);
  await until("the watch to listen", () => servedFromMemory(c.id));
  const killed = await worker.sql.query<{ ok: boolean }>("SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE application_name = 'kiln-watch'");
  assert.ok(killed.length >= 1 && killed.every((k) => k.ok));
  // From the moment the loss is noticed, a change made without notification is still seen.
  await until("the loss to be noticed", async () => !(await servedFromMemory(c.id)));
  await worker.sql.query("ALTER TABLE images DISABLE TRIGGER images_changed");
  try {
    await worker.sql.query(`UPDATE images SET doc = jsonb_set(doc, '{name}', '"unannounced"') WHERE id = $1`, [c.id]);
    assert.equal(JSON.parse((await api.getJson("images", c.id))!).name, "unannounced");
  } finally {
    await worker.sql.query("ALTER TABLE images ENABLE TRIGGER images_changed");
  }
  await until("the watch to listen again", () => servedFromMemory(c.id), 15000);
  await worker.update("images", c.id, (d) => ({ ...d, name: "after" }));
  await until("a change after the reconnect", async () => JSON.parse((await api.getJson("images", c.id))!).name === "after");
});

test("on PostgreSQL the reaper's lost-message queries work against pg-boss' own tables", async () => {
  const queue = await PgBossQueue.start(worker.sql, { maintenance: false });
  try {
    const id = randomUUID();
    const queueId = await queue.enqueue(id, "create.x86_64");
    const [m] = await queue.messagesFor("create.x86_64", [id, randomUUID()]);
    assert.deepEqual({ jobId: m!.jobId, queueId: m!.queueId, state: m!.state }, { jobId: id, queueId, state: "created" });
    assert.deepEqual(await worker.waitingJobs(0), []);
    await queue.drop("create.x86_64", queueId, "test");
  } finally {
    await queue.stop();
  }
});
