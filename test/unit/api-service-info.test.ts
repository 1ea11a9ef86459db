/**
 * GET /v3/service: the catalog and object store the service uses, for the web console's Service
 * page, and never a credential: the S3 store's keys, the database's password (in the URL or as
 * libpq's `?password=`). Real PGlite catalog; a real S3 store object, which this route never
 * contacts (so no S3 server is needed), opened with keys the answer must not carry.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { buildApp } from "../../src/api/app.js";
import { publicLocation } from "../../src/api/routes/kiln.js";
import { StaticTokenVerifier } from "../../src/api/tokens.js";
import { Catalog } from "../../src/catalog/catalog.js";
import { redact } from "../../src/catalog/sql.js";
import { openStore } from "../../src/store/open-store.js";
import { RecordingQueue, READER, startTestService } from "../helpers/service.js";
import { KILN_VERSION } from "../../src/version.js";

test("GET /v3/service names the embedded catalog's directory and the file store to a read-only token", async () => {
  const s = await startTestService();
  try {
    const r = await s.call("GET", "/v3/service", undefined, READER);
    assert.equal(r.statusCode, 200, r.body);
    assert.deepEqual(JSON.parse(r.body), {
      version: KILN_VERSION,
      catalog: { kind: "pglite", location: path.join(s.dir, "catalog") },
      store: { kind: "file", location: `file://${path.join(s.dir, "objects")}` },
    });
    assert.equal((await s.call("GET", "/v3/service", undefined, null)).statusCode, 401);
  } finally {
    await s.close();
  }
});

test("with an S3 store the answer has its endpoint and never its access or secret key", async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), "kiln-service-info-"));
  const catalog = await Catalog.open(undefined, dir);
  const secretKey = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY";
  const accessKey = "AKIAIOSFODNN7EXAMPLE";
  const store = await openStore("s3://minio.example:9000?region=eu-central-1&tls=false", { accessKey, secretKey });
  const app = await buildApp({ catalog, store, queue: new RecordingQueue(), tokens: new StaticTokenVerifier({ [READER]: "read-only" }), settings: { scratchDir: path.join(dir, "tmp"), maxRecipeSize: 1024 * 1024, workerTimeout: 30 } });
  try {
    await app.ready();
    const r = await app.inject({ method: "GET", url: "/v3/service", headers: { authorization: `Bearer ${READER}` } });
    assert.equal(r.statusCode, 200, r.body);
    assert.deepEqual(JSON.parse(r.body).store, { kind: "s3", location: "s3://minio.example:9000" });
    assert.ok(!r.body.includes(secretKey) && !r.body.includes(accessKey), r.body);
  } finally {
    await app.close();
    await store.close();
    await catalog.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test("a PostgreSQL catalog's location keeps user, host, port and database; its password, in the URL or as ?password=, is never shown", () => {
  // sql.ts hands the route the URL as redact() leaves it: the password in the authority masked, the query kept.
  const where = redact("postgres://kiln:hunter2@db.example:5432/kiln?password=hunter3&sslmode=require#x");
  assert.equal(publicLocation(where), "postgres://kiln@db.example:5432/kiln");
  assert.equal(publicLocation("postgresql://kiln:hunter2@db.example/kiln"), "postgresql://kiln@db.example/kiln", "even a URL not redacted");
  assert.equal(publicLocation("/var/lib/kiln/catalog"), "/var/lib/kiln/catalog");
  assert.equal(publicLocation("file:///var/lib/kiln/objects"), "file:///var/lib/kiln/objects");
  assert.equal(publicLocation("kiln:hunter2 somewhere"), "(not shown)", "what is neither a URL nor a path is not echoed");
});
