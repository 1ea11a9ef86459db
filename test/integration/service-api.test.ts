/**
 * The API suite against real `kiln serve` processes: the embedded default (PGlite + filesystem
 * store, no setup at all) and the multi-node configuration (PostgreSQL + S3, Ceph RGW, started
 * by scripts/postgres-server.sh and scripts/s3-server.sh). Plus what only a process shows:
 * tokens made by `kiln token create` while the server runs, roles, and a clean SIGTERM.
 */
import { describe, before, after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import path from "node:path";
import { defineRecordSuite, httpTarget, type ApiTarget } from "../helpers/api-suite.js";
import { runKiln } from "../helpers/kiln.js";
import { createToken, startServe, type ServiceProcess } from "../helpers/service-process.js";
import { postgresServer, s3Server, type TestServer } from "../helpers/servers.js";
import { openStore } from "../../src/store/open-store.js";
import type { ObjectStore } from "../../src/store/object-store.js";

describe("kiln serve with no setup (PGlite + filesystem)", () => {
  let dir: string;
  let serve: ServiceProcess;
  let store: ObjectStore;
  let target: ApiTarget;
  before(async () => {
    dir = await mkdtemp("/var/tmp/kiln-svc-api-");
    const admin = await createToken(path.join(dir, "data"), "admin");
    const reader = await createToken(path.join(dir, "data"), "read-only");
    serve = await startServe(["--data-dir", path.join(dir, "data"), "--no-worker"]);
    store = await openStore(`file://${path.join(dir, "data", "objects")}`);
    target = httpTarget(serve.url, store, admin, reader);
  });
  after(async () => {
    assert.equal(await serve?.stop(), 143, "SIGTERM: exit 143 after a clean stop");
    await store?.close();
    await rm(dir, { recursive: true, force: true });
  });

  defineRecordSuite(() => target);

  test("tokens made while the server runs work at once; read-only tokens read but cannot write", async () => {
    const reader = await createToken(path.join(dir, "data"), "read-only");
    await new Promise((r) => setTimeout(r, 1100)); // the server checks tokens.json at most once a second
    assert.equal((await target.call("GET", "/v3/images", undefined, reader)).statusCode, 200);
    const w = await target.call("POST", "/v3/images", { name: "x" }, reader);
    assert.equal(w.statusCode, 403);
    assert.equal((await target.call("GET", "/v3/images", undefined, "kiln_nope")).statusCode, 401);
    assert.equal((await target.call("GET", "/healthz/ready", undefined, null)).statusCode, 200);
  });

  test("TLS by configuration: --tls-cert/--tls-key serve HTTPS", async () => {
    const { execFileSync } = await import("node:child_process");
    const { request } = await import("node:https");
    const { readFile } = await import("node:fs/promises");
    const cert = path.join(dir, "cert.pem");
    const key = path.join(dir, "key.pem");
    // prettier-ignore
    execFileSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
                             "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert], { stdio: "ignore" });
    const tls = await startServe(["--data-dir", path.join(dir, "tls"), "--no-worker", "--tls-cert", cert, "--tls-key", key]);
    try {
      assert.match(tls.url, /^https:\/\/127\.0\.0\.1:\d+$/);
      const ca = await readFile(cert);
      const body = await new Promise<string>((resolve, reject) => {
        request(`${tls.url}/version`, { ca }, (res) => {
          let b = "";
          res.on("data", (d: Buffer) => (b += d.toString()));
          res.on("end", () => resolve(b));
        })
          .on("error", reject)
          .end();
      });
      assert.match(body, /"version"/);
    } finally {
      await tls.stop();
    }
  });

  test("kiln ims remote-build-nodes mirrors cray ims remote-build-nodes: create --xname, list, describe, status list|describe, delete, deleteall", async () => {
    const env = { KILN_URL: serve.url, KILN_TOKEN: target.adminToken };
    const ims = async (args: string[], code = 0) => {
      const r = await runKiln(["ims", "remote-build-nodes", ...args], { env });
      assert.equal(r.code, code, `kiln ims remote-build-nodes ${args.join(" ")}: ${r.stderr}`);
      return r;
    };
    await ims(["deleteall"]);
    assert.deepEqual(JSON.parse((await ims(["create", "--xname", "x3000c0s9b0n0", "--json"])).stdout), { xname: "x3000c0s9b0n0" });
    assert.match((await ims(["list"])).stdout, /^XNAME\nx3000c0s9b0n0\n$/);
    assert.deepEqual(JSON.parse((await ims(["describe", "x3000c0s9b0n0", "--json"])).stdout), { xname: "x3000c0s9b0n0" });
    const table = (await ims(["status", "list"])).stdout;
    assert.match(table, /^XNAME +ABLETORUNJOBS +SSHSTATUS/);
    assert.match(table, /x3000c0s9b0n0 +false +Unable to connect to node\. Error: /);
    const one = JSON.parse((await ims(["status", "describe", "x3000c0s9b0n0", "--json"])).stdout) as { xname: string; ableToRunJobs: boolean };
    assert.equal(one.xname, "x3000c0s9b0n0");
    assert.equal(one.ableToRunJobs, false);
    assert.match((await ims(["status", "describe", "x3000c0s9b0n0"])).stdout, /^kiln\.reason: Kiln runs no jobs on remote build nodes/m);
    assert.equal((await ims(["delete", "x3000c0s9b0n0"])).stdout, "deleted x3000c0s9b0n0\n");
    assert.match((await ims(["describe", "x3000c0s9b0n0"], 2)).stderr, /404 no remote build node "x3000c0s9b0n0"/);
    assert.equal((await ims(["list"])).stdout, "no remote-build-nodes\n");
    assert.equal((await ims(["status", "list"])).stdout, "no remote-build-nodes\n");
  });

  test("a second process cannot open the same embedded catalog", async () => {
    await assert.rejects(startServe(["--data-dir", path.join(dir, "data"), "--no-worker"]), /in use by process \d+/);
  });
});

describe("kiln serve on PostgreSQL and S3 (Ceph RGW)", () => {
  let pg: TestServer;
  let s3: TestServer;
  let dir: string;
  let serve: ServiceProcess;
  let store: ObjectStore;
  let target: ApiTarget;
  before(async () => {
    [pg, s3] = await Promise.all([postgresServer(), s3Server()]);
    dir = await mkdtemp("/var/tmp/kiln-svc-pg-");
    const admin = await createToken(path.join(dir, "data"), "admin");
    const reader = await createToken(path.join(dir, "data"), "read-only");
    const storeUrl = s3.env.KILN_S3_URL!;
    serve = await startServe(["--data-dir", path.join(dir, "data"), "--no-worker", "--database", pg.env.KILN_TEST_DATABASE_URL!, "--store", storeUrl], s3.env);
    store = await openStore(storeUrl, { env: s3.env });
    target = httpTarget(serve.url, store, admin, reader);
  });
  after(async () => {
    await serve?.stop();
    await store?.close();
    await Promise.all([pg?.stop(), s3?.stop()]);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  defineRecordSuite(() => target);
});
