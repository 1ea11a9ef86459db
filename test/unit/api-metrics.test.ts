/**
 * GET /metrics through inject(): jobs counted from the catalog by type and status, requests timed
 * by route pattern (never the raw URL), the worker's job and stage observations, store writes,
 * and who may scrape (--metrics open, token, off). The scrape of a real `kiln serve`, checked with
 * promtool, is in test/integration/metrics.test.ts.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Readable } from "node:stream";
import { ADMIN, READER, startTestService, type TestService } from "../helpers/service.js";
import { IMS_BUCKET } from "../../src/catalog/objects.js";
import { Metrics } from "../../src/api/metrics.js";
import { FsStore } from "../../src/store/fs-store.js";

let s: TestService;
let recipeId: string;
let keyId: string;
before(async () => {
  s = await startTestService();
  recipeId = (JSON.parse((await s.call("POST", "/v3/recipes", { name: "r", recipe_type: "kiln", linux_distribution: "debian12", require_dkms: false })).body) as { id: string }).id;
  await s.store.put(IMS_BUCKET, `recipes/${recipeId}/recipe.tar.gz`, "x");
  await s.call("PATCH", `/v3/recipes/${recipeId}`, { link: { path: `s3://ims/recipes/${recipeId}/recipe.tar.gz`, type: "s3" } });
  keyId = (JSON.parse((await s.call("POST", "/v3/public-keys", { name: "k", public_key: "ssh-ed25519 AAAA k" })).body) as { id: string }).id;
});
after(async () => {
  await s.close();
});

/** The value of one series in a scrape, or undefined when it is absent. */
function sample(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

test("kiln_jobs counts the catalog's jobs by type and status, and queue depth the unclaimed ones", async () => {
  const before = await s.call("GET", "/metrics", undefined, null);
  assert.equal(before.statusCode, 200);
  assert.match(String(before.headers["content-type"]), /^text\/plain; version=0\.0\.4/);
  assert.equal(sample(before.body, 'kiln_jobs{type="create",status="creating"}'), 0);
  for (let i = 0; i < 2; i++) {
    const r = await s.call("POST", "/v3/jobs", { job_type: "create", artifact_id: recipeId, public_key_id: keyId, image_root_archive_name: "web" });
    assert.equal(r.statusCode, 201, r.body);
  }
  const id = (JSON.parse((await s.call("POST", "/v3/jobs", { job_type: "create", artifact_id: recipeId, public_key_id: keyId, image_root_archive_name: "web" })).body) as { id: string }).id;
  await s.catalog.setJobStatus(id, "error", { kiln: { error: "test" } });
  const text = (await s.call("GET", "/metrics", undefined, null)).body;
  assert.equal(sample(text, 'kiln_jobs{type="create",status="creating"}'), 2);
  assert.equal(sample(text, 'kiln_jobs{type="create",status="error"}'), 1);
  assert.equal(sample(text, 'kiln_jobs{type="customize",status="creating"}'), 0);
  assert.equal(sample(text, 'kiln_queue_depth{type="create"}'), 2);
  assert.equal(sample(text, "kiln_workers_alive"), 0);
});

test("requests are timed by route pattern and code, never by raw URL", async () => {
  const missing = "00000000-0000-4000-8000-000000000000";
  assert.equal((await s.call("GET", `/v3/images/${missing}`)).statusCode, 404);
  assert.equal((await s.call("GET", `/no/such/route/${missing}`)).statusCode, 404);
  const text = (await s.call("GET", "/metrics", undefined, null)).body;
  assert.ok((sample(text, 'kiln_http_request_duration_seconds_count{method="GET",route="/v3/images/:id",code="404"}') ?? 0) >= 1, text.slice(0, 3000));
  assert.ok((sample(text, 'kiln_http_request_duration_seconds_count{method="GET",route="unmatched",code="404"}') ?? 0) >= 1);
  assert.ok(!text.includes(missing), "no id appears in a label");
});

test("the worker's observations: job and stage histograms, cache hits and misses", async () => {
  const m = new Metrics();
  m.jobEnded("create", "success", 42);
  m.buildEvent({ type: "stage-end", name: "bootstrap", key: "k1", cached: true, seconds: 0.1, at: "2026-12-03T14:00:00.000Z", ranWith: [] });
  m.buildEvent({ type: "stage-end", name: "packages", key: "k2", cached: false, seconds: 70, at: "2026-12-03T14:01:10.000Z", ranWith: [] });
  m.buildEvent({ type: "stage-start", name: "seal", cached: false, summary: "", at: "2026-12-03T14:01:10.000Z", running: [] });
  const text = await m.registry.metrics();
  assert.equal(sample(text, 'kiln_job_duration_seconds_bucket{le="60",type="create",status="success"}'), 1);
  assert.equal(sample(text, 'kiln_job_duration_seconds_bucket{le="30",type="create",status="success"}'), 0);
  assert.equal(sample(text, 'kiln_cache_hits_total{stage="bootstrap"}'), 1);
  assert.equal(sample(text, 'kiln_cache_misses_total{stage="packages"}'), 1);
  assert.equal(sample(text, 'kiln_stage_duration_seconds_sum{stage="packages",cached="false"}'), 70);
  assert.equal(sample(text, 'kiln_cache_misses_total{stage="seal"}'), undefined, "a stage start counts nothing");
});

test("countWrites counts the bytes of puts and copies by bucket, and keeps the store's class", async () => {
  const m = new Metrics();
  const store = m.countWrites(s.store);
  assert.ok(store instanceof FsStore, "serve still recognises a file store");
  await store.put(IMS_BUCKET, "metrics/a", Readable.from([Buffer.alloc(1000)]));
  await store.copy(IMS_BUCKET, "metrics/a", "metrics/b");
  assert.equal((await store.head(IMS_BUCKET, "metrics/b")).size, 1000);
  assert.equal(sample(await m.registry.metrics(), 'kiln_store_written_bytes_total{bucket="ims"}'), 2000);
});

test("--metrics token: a scrape without a token is refused, a read-only token may scrape; off: no route", async () => {
  const t = await startTestService({ metricsAccess: "token" });
  try {
    const denied = await t.call("GET", "/metrics", undefined, null);
    assert.equal(denied.statusCode, 401);
    assert.match(denied.body, /needs a bearer token/);
    assert.equal((await t.call("GET", "/metrics", undefined, READER)).statusCode, 200);
  } finally {
    await t.close();
  }
  const off = await startTestService({ metricsAccess: "off" });
  try {
    assert.equal((await off.call("GET", "/metrics", undefined, ADMIN)).statusCode, 404);
  } finally {
    await off.close();
  }
});
