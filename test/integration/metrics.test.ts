/**
 * GET /metrics of a real `kiln serve` after a real job: the job counted with its type and final
 * status, the in-process worker's job histogram, the HTTP histogram labelled with route patterns,
 * the recipe upload's bytes in the store counter; and the whole text accepted by Prometheus' own
 * linter, `promtool check metrics` (Debian package prometheus). The job is a kiwi-ng recipe, which
 * a worker takes, fetches and fails in seconds, so no image build is needed.
 */
import { before, after, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { waitFor } from "../helpers/ims-cli.js";
import { createToken, startServe, type ServiceProcess } from "../helpers/service-process.js";

let dir: string;
let serve: ServiceProcess;
let token: string;
let text: string;

async function api(method: string, url: string, body?: unknown): Promise<Record<string, unknown>> {
  const r = await fetch(`${serve.url}${url}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { "content-type": "application/json" } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  assert.ok(r.status < 300, `${method} ${url}: ${r.status} ${await r.clone().text()}`);
  return (await r.json()) as Record<string, unknown>;
}

function sample(series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "kiln-metrics-"));
  const dataDir = path.join(dir, "data");
  token = await createToken(dataDir, "admin");
  serve = await startServe(["--data-dir", dataDir, "--cache-dir", path.join(dir, "cache"), "--verify", "never", "--heartbeat", "1", "--worker-timeout", "5"]);

  const key = await api("POST", "/v3/public-keys", { name: "k", public_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKiln operator@test" });
  const rec = await api("POST", "/v3/recipes", { name: "sles", recipe_type: "kiwi-ng", linux_distribution: "sles15" });
  await writeFile(path.join(dir, "config.xml"), "<image schemaversion='7.4' name='x'/>\n");
  execFileSync("tar", ["-czf", path.join(dir, "kiwi.tar.gz"), "-C", dir, "config.xml"]);
  const put = await fetch(`${serve.url}/v3/recipes/${String(rec.id)}/archive`, { method: "PUT", headers: { authorization: `Bearer ${token}`, "content-type": "application/gzip" }, body: await readFile(path.join(dir, "kiwi.tar.gz")) });
  assert.equal(put.status, 200);
  const job = await api("POST", "/v3/jobs", { job_type: "create", artifact_id: rec.id, public_key_id: key.id, image_root_archive_name: "sles" });
  await waitFor("the job to end", async () => ((await api("GET", `/v3/jobs/${String(job.id)}`)).status === "error" ? true : undefined), 120);
  // Scraped as Prometheus does by default: no token.
  const r = await fetch(`${serve.url}/metrics`);
  assert.equal(r.status, 200);
  text = await r.text();
});

after(async () => {
  await serve?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

test("the job is counted with its type and status, and its duration observed by the worker", () => {
  assert.equal(sample('kiln_jobs{type="create",status="error"}'), 1, text);
  assert.equal(sample('kiln_jobs{type="create",status="success"}'), 0);
  assert.equal(sample('kiln_queue_depth{type="create"}'), 0);
  assert.equal(sample("kiln_workers_alive"), 1);
  assert.equal(sample('kiln_job_duration_seconds_count{type="create",status="error"}'), 1);
});

test("HTTP durations carry the route pattern and the code; the upload's bytes are counted", () => {
  assert.equal(sample('kiln_http_request_duration_seconds_count{method="PUT",route="/v3/recipes/:id/archive",code="200"}'), 1);
  assert.ok((sample('kiln_http_request_duration_seconds_count{method="GET",route="/v3/jobs/:id",code="200"}') ?? 0) >= 1);
  assert.ok((sample('kiln_store_written_bytes_total{bucket="ims"}') ?? 0) > 0);
});

test("promtool check metrics accepts the text", () => {
  const r = spawnSync("promtool", ["check", "metrics"], { input: text, encoding: "utf8" });
  assert.equal(r.error, undefined, "promtool is installed (scripts/setup.sh: prometheus)");
  assert.equal(r.status, 0, `promtool: ${r.stdout}${r.stderr}`);
});
