/**
 * Job routes through inject() (no worker runs): IMS' POST rules, DELETE filters, PATCH, cancel,
 * the log route; plus bearer-token auth and roles.
 */
import { randomUUID } from "node:crypto";
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { ADMIN, READER, startTestService, type TestService } from "../helpers/service.js";
import { IMS_BUCKET } from "../../src/catalog/objects.js";
import { parseAge } from "../../src/api/routes/jobs.js";

let s: TestService;
let recipeId: string;
let keyId: string;
before(async () => {
  s = await startTestService();
  const r = JSON.parse((await s.call("POST", "/v3/recipes", { name: "r", recipe_type: "kiln", linux_distribution: "debian12", require_dkms: false })).body) as { id: string };
  recipeId = r.id;
  await s.store.put(IMS_BUCKET, `recipes/${recipeId}/recipe.tar.gz`, "x");
  await s.call("PATCH", `/v3/recipes/${recipeId}`, { link: { path: `s3://ims/recipes/${recipeId}/recipe.tar.gz`, type: "s3" } });
  keyId = (JSON.parse((await s.call("POST", "/v3/public-keys", { name: "k", public_key: "ssh-ed25519 AAAA k" })).body) as { id: string }).id;
});
after(async () => {
  await s.close();
});

function json<T = Record<string, unknown>>(r: { body: string }): T {
  return JSON.parse(r.body) as T;
}

const job = (extra: Record<string, unknown> = {}) => ({ job_type: "create", artifact_id: recipeId, public_key_id: keyId, image_root_archive_name: "web", ...extra });

test("POST /v3/jobs: IMS defaults, Kiln fields, queued once", async () => {
  const r = await s.call("POST", "/v3/jobs", job());
  assert.equal(r.statusCode, 201, r.body);
  const j = json<Record<string, unknown> & { id: string; kiln: Record<string, unknown> }>(r);
  assert.equal(j.status, "creating");
  assert.equal(j.resultant_image_id, null);
  assert.equal(j.build_env_size, 60);
  assert.equal(j.job_mem_size, 8);
  assert.equal(j.kernel_file_name, "vmlinuz");
  assert.equal(j.initrd_file_name, "initrd");
  assert.equal(j.kernel_parameters_file_name, "kernel-parameters");
  assert.equal(j.enable_debug, false);
  assert.equal(j.require_dkms, false, "create takes require_dkms from the recipe");
  assert.equal(j.arch, "x86_64");
  assert.deepEqual(j.ssh_containers, []);
  assert.equal(j.remote_build_node, "");
  assert.equal(j.kiln.log, `/v3/jobs/${j.id}/log`);
  assert.deepEqual(s.queue.sent.at(-1), { jobId: j.id, lane: "create.x86_64", queueId: `q-${s.queue.sent.length}` });
  assert.equal(json<{ status: string }>(await s.call("GET", `/v3/jobs/${j.id}`)).status, "creating");
  // No worker is alive in this test service: the job says what it waits for.
  assert.match((await s.catalog.readLog(j.id)).map((c) => c.text).join(""), /waiting for a worker that builds x86_64: no worker is alive \(it ends error after --arch-wait\)/);
});

test("POST /v3/jobs: enable_debug adds a debug shell; ssh_containers on create, several, missing records are refused", async () => {
  const d = json<{ ssh_containers: unknown[] }>(await s.call("POST", "/v3/jobs", job({ enable_debug: true })));
  assert.deepEqual(d.ssh_containers, [{ name: "debug", jail: false, status: "pending", connection_info: {} }]);
  const cases: Array<[Record<string, unknown>, number, RegExp]> = [
    [job({ ssh_containers: [{ name: "x" }] }), 400, /create jobs take none/],
    [job({ artifact_id: "6a6b2d4e-2f5c-4a9b-9b1e-0c6f7b0e8d11" }), 400, /no recipe/],
    [job({ public_key_id: "6a6b2d4e-2f5c-4a9b-9b1e-0c6f7b0e8d11" }), 400, /no public key/],
    [job({ artifact_id: "nope" }), 422, /artifact_id/],
    [job({ job_type: "build" }), 422, /job_type/],
    [job({ build_env_size: 0 }), 422, /build_env_size/],
    [job({ kubernetes_job: "x" }), 422, /kubernetes_job: unknown field/],
    [{ ...job(), image_root_archive_name: undefined }, 422, /image_root_archive_name/],
    [{ job_type: "customize", artifact_id: recipeId, public_key_id: keyId, image_root_archive_name: "x", ssh_containers: [{ name: "a" }, { name: "b" }] }, 400, /at most one/],
  ];
  const before = s.queue.sent.length;
  for (const [body, code, re] of cases) {
    const r = await s.call("POST", "/v3/jobs", body);
    assert.equal(r.statusCode, code, `${JSON.stringify(body)}: ${r.body}`);
    assert.match(r.body, re);
  }
  assert.equal(s.queue.sent.length, before, "nothing queued");
  const noLink = json<{ id: string }>(await s.call("POST", "/v3/recipes", { name: "n", recipe_type: "kiln", linux_distribution: "debian12" }));
  assert.equal((await s.call("POST", "/v3/jobs", job({ artifact_id: noLink.id }))).statusCode, 400, "a recipe with no link");
});

test("POST /v3/jobs: a customize job with ssh_containers [{jail: true}] and no name (what cray ims sends) gets a jail named customize", async () => {
  await s.store.put(IMS_BUCKET, "images/src/rootfs", "x");
  // Inserted directly: the API checks an image's manifest, which is not what this test is about.
  const img = await s.catalog.insert("images", { id: randomUUID(), created: "2026-01-01T00:00:00", name: "src", link: { path: "s3://ims/images/src/rootfs", type: "s3", etag: "" }, arch: "x86_64", metadata: {} });
  const r = await s.call("POST", "/v3/jobs", { job_type: "customize", artifact_id: img.id, public_key_id: keyId, image_root_archive_name: "jailed", ssh_containers: [{ jail: true }] });
  assert.equal(r.statusCode, 201, r.body);
  const j = json<{ id: string; ssh_containers: unknown[] }>(r);
  assert.deepEqual(j.ssh_containers, [{ name: "customize", jail: true, status: "pending", connection_info: {} }]);
  assert.deepEqual((await s.catalog.get("jobs", j.id))!.ssh_containers, j.ssh_containers, "the stored record asks for the jail too");
  const named = json<{ ssh_containers: unknown[] }>(await s.call("POST", "/v3/jobs", { job_type: "customize", artifact_id: img.id, public_key_id: keyId, image_root_archive_name: "plain", ssh_containers: [{ name: "mine" }] }));
  assert.deepEqual(named.ssh_containers, [{ name: "mine", jail: false, status: "pending", connection_info: {} }]);
});

test("PATCH /v3/jobs/{id} sets status and result; DELETE with filters deletes matching jobs only", async () => {
  const a = json<{ id: string }>(await s.call("POST", "/v3/jobs", job()));
  const p = await s.call("PATCH", `/v3/jobs/${a.id}`, { status: "success", resultant_image_id: "6a6b2d4e-2f5c-4a9b-9b1e-0c6f7b0e8d11" });
  assert.equal(p.statusCode, 200);
  assert.equal(json<{ status: string }>(p).status, "success");
  assert.equal((await s.call("PATCH", `/v3/jobs/${a.id}`, { status: "done" })).statusCode, 422);
  assert.equal((await s.call("PATCH", `/v3/jobs/${a.id}`, {})).statusCode, 400);

  assert.equal((await s.call("DELETE", "/v3/jobs?status=finished")).statusCode, 400);
  assert.equal((await s.call("DELETE", "/v3/jobs?job_type=build")).statusCode, 400);
  assert.equal((await s.call("DELETE", "/v3/jobs?age=soon")).statusCode, 400);
  assert.equal((await s.call("DELETE", "/v3/jobs?status=success&age=1d")).statusCode, 204);
  assert.equal((await s.call("GET", `/v3/jobs/${a.id}`)).statusCode, 200, "younger than a day: kept");
  assert.equal((await s.call("DELETE", "/v3/jobs?status=success&status=error&job_type=create")).statusCode, 204);
  assert.equal((await s.call("GET", `/v3/jobs/${a.id}`)).statusCode, 404);
  assert.ok(json<Array<{ status: string }>>(await s.call("GET", "/v3/jobs")).every((j) => j.status === "creating" || j.status === "error"));
});

test("IMS age filters", () => {
  assert.equal(parseAge("1d"), 86400);
  assert.equal(parseAge("6h"), 6 * 3600);
  assert.equal(parseAge("2w3d"), 17 * 86400);
  assert.equal(parseAge("10min"), 600);
  assert.equal(parseAge("x"), undefined);
  assert.equal(parseAge(""), undefined);
});

test("cancel: a queued job ends error at once and its message is dropped; an ended job is 409", async () => {
  const j = json<{ id: string }>(await s.call("POST", "/v3/jobs", job()));
  const r = await s.call("POST", `/v3/jobs/${j.id}/cancel`);
  assert.equal(r.statusCode, 202);
  const c = json<{ status: string; kiln: { error: string } }>(r);
  assert.equal(c.status, "error");
  assert.match(c.kiln.error, /cancelled before a worker took it/);
  assert.ok(s.queue.dropped.length > 0);
  assert.equal((await s.call("POST", `/v3/jobs/${j.id}/cancel`)).statusCode, 409);
  assert.equal((await s.call("POST", `/v2/jobs/${j.id}/cancel`)).statusCode, 404, "Kiln additions live under v3");
});

test("cancel: a running job whose worker process is gone ends error at once; one whose worker lives only gets cancel_requested", async () => {
  await s.catalog.heartbeat({ name: "w", instance: "i-live", host: "h", pid: 1, version: "0", concurrency: 1, arches: ["x86_64"] }, 1);
  await s.catalog.heartbeat({ name: "w", instance: "i-killed", host: "h", pid: 2, version: "0", concurrency: 1, arches: ["x86_64"] }, 1);
  const live = json<{ id: string }>(await s.call("POST", "/v3/jobs", job()));
  const orphan = json<{ id: string }>(await s.call("POST", "/v3/jobs", job()));
  await s.catalog.claimJob(live.id, "w", "i-live");
  await s.catalog.claimJob(orphan.id, "w", "i-killed");
  for (const id of [live.id, orphan.id]) await s.catalog.setJobStatus(id, "building_image");
  // The killed process's heartbeats stopped past the worker timeout (30 s here); the live one,
  // of the same name, keeps beating.
  await s.catalog.sql.query("UPDATE workers SET last_seen = now() - interval '1 minute' WHERE instance = 'i-killed'");

  const a = json<{ status: string; kiln: { cancel_requested: boolean } }>(await s.call("POST", `/v3/jobs/${live.id}/cancel`));
  assert.equal(a.status, "building_image", "its worker stops it at its next heartbeat");
  assert.equal(a.kiln.cancel_requested, true);
  const r = await s.call("POST", `/v3/jobs/${orphan.id}/cancel`);
  assert.equal(r.statusCode, 202);
  const b = json<{ status: string; kiln: { error: string } }>(r);
  assert.equal(b.status, "error");
  assert.match(b.kiln.error, /^cancelled: .*its worker is gone \(worker w stopped sending heartbeats \(process i-killed/);
  assert.equal(await s.catalog.jobWorker(orphan.id), null, "released");
});

test("the log route returns what the worker wrote, and follows a running job until it ends", async () => {
  const j = json<{ id: string }>(await s.call("POST", "/v3/jobs", job()));
  await s.catalog.appendLog(j.id, "one\n");
  assert.equal((await s.call("GET", `/v3/jobs/${j.id}/log?follow=false`)).body, "one\n");
  setTimeout(() => {
    void (async () => {
      await s.catalog.appendLog(j.id, "two\n");
      await s.catalog.setJobStatus(j.id, "error", { kiln: { error: "x" } });
    })();
  }, 700);
  const t0 = Date.now();
  const r = await s.call("GET", `/v3/jobs/${j.id}/log`);
  assert.equal(r.statusCode, 200);
  assert.equal(r.headers["content-type"], "text/plain; charset=utf-8");
  assert.equal(r.body, "one\ntwo\n");
  assert.ok(Date.now() - t0 >= 600, "it waited for the job to end");
  assert.equal((await s.call("GET", "/v3/jobs/6a6b2d4e-2f5c-4a9b-9b1e-0c6f7b0e8d11/log")).statusCode, 404);
});

test("auth: no token 401, unknown token 401, read-only token reads but gets 403 on writes", async () => {
  const none = await s.call("GET", "/v3/images", undefined, null);
  assert.equal(none.statusCode, 401);
  assert.match(String(none.headers["www-authenticate"]), /^Bearer/);
  assert.equal(json<{ code: string }>(none).code, "UNAUTHORIZED");
  assert.equal((await s.call("GET", "/apis/ims/v3/images", undefined, "wrong")).statusCode, 401);
  assert.equal((await s.call("GET", "/v3/images", undefined, READER)).statusCode, 200);
  for (const [m, url, body] of [
    ["POST", "/v3/images", { name: "x" }],
    ["DELETE", "/v3/images", undefined],
    ["PATCH", "/v3/deleted/images", { operation: "undelete" }],
    ["POST", "/v3/jobs", job()],
  ] as const) {
    const r = await s.call(m, url, body, READER);
    assert.equal(r.statusCode, 403, `${m} ${url}`);
    assert.equal(json<{ code: string }>(r).code, "FORBIDDEN");
  }
  assert.equal((await s.call("POST", "/v3/images", { name: "x" }, ADMIN)).statusCode, 201);
});
