/**
 * The service's MAAS boot source (kiln serve --streams): a real catalog (PGlite) and fs store,
 * images inserted as a job's publish step leaves them, served on a real port and checked with
 * `kiln streams check`'s code and gpgv; promotion through the API; retention; unpublished labels
 * unreachable; items streamed from the store, not copied.
 */
import assert from "node:assert/strict";
import { createHash, randomUUID } from "node:crypto";
import { readdir, writeFile, mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { BOOT_IMAGES_BUCKET } from "../../src/catalog/objects.js";
import type { ImageRecord } from "../../src/catalog/records.js";
import { checkStream, openSource } from "../../src/streams/check.js";
import type { ProductsFile } from "../../src/streams/format.js";
import { openSigner, type Signer } from "../../src/streams/sign.js";
import { startTestService, type TestService } from "../helpers/service.js";
import { throwawayKey } from "../helpers/streams.js";

let s: TestService;
let signer: Signer;
let keyDir: string;
let base: string;

async function walk(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) out.push(...(e.isDirectory() ? await walk(path.join(dir, e.name)) : [path.join(dir, e.name)]));
  return out.sort();
}

/** An image record and its objects as publishImage leaves them: artifacts with sha256 metadata, a manifest, then the link. */
async function addImage(created: string, label: string | undefined, link = true): Promise<string> {
  const id = randomUUID();
  const artifacts: Array<Record<string, unknown>> = [];
  for (const [base, type, flavor] of [["rootfs", "application/vnd.cray.image.rootfs.squashfs", undefined], ["kernel", "application/vnd.cray.image.kernel", "generic"], ["initrd", "application/vnd.cray.image.initrd", "generic"]] as const) {
    const body = Buffer.from(`${base} of ${id}\n`.repeat(100));
    const md5 = createHash("md5").update(body).digest("hex");
    const info = await s.store.put(BOOT_IMAGES_BUCKET, `${id}/${base}`, body, { contentType: type, size: body.length, metadata: { md5sum: md5, sha256: createHash("sha256").update(body).digest("hex") } });
    artifacts.push({ link: { etag: info.etag, path: `s3://${BOOT_IMAGES_BUCKET}/${id}/${base}`, type: "s3" }, md5, type, ...(flavor ? { flavor } : {}) });
  }
  const manifest = JSON.stringify({ artifacts, created: created, version: "1.0" });
  const m = await s.store.put(BOOT_IMAGES_BUCKET, `${id}/manifest.json`, manifest, { contentType: "application/json" });
  const rec: ImageRecord = {
    id, created, name: "bookworm-web", arch: "x86_64", metadata: {},
    link: link ? { path: `s3://${BOOT_IMAGES_BUCKET}/${id}/manifest.json`, etag: m.etag, type: "s3" } : null,
    kiln: { job_id: randomUUID(), source_image_id: null, flavors: [{ flavor: "generic", kpackage: "linux-image-amd64", kernel_version: "6.1.0-1-amd64" }], package_diff: null, ...(label ? { label } : {}) },
  };
  await s.catalog.insert("images", rec);
  return id;
}

async function get(rel: string): Promise<Response> {
  return fetch(`${base}/streams/${rel}`);
}

async function stableProducts(): Promise<ProductsFile> {
  const r = await get("v1/org.kiln:stable:v3:download.json");
  assert.equal(r.status, 200);
  return (await r.json()) as ProductsFile;
}

before(async () => {
  keyDir = await mkdtemp(path.join(os.tmpdir(), "kiln-streams-svc-"));
  const key = await throwawayKey(keyDir);
  signer = await openSigner(key.secret);
  s = await startTestService({ streams: { access: "open", labels: ["stable"], keep: 2, signer } });
  await s.app.listen({ host: "127.0.0.1", port: 0 });
  base = `http://127.0.0.1:${(s.app.server.address() as { port: number }).port}`;
});

after(async () => {
  await s.close();
  await signer.close();
  await rm(keyDir, { recursive: true, force: true });
});

test("streams: promotion through the API moves an image into the published tree; the candidate is not reachable before", async () => {
  const id = await addImage("2026-12-01T10:00:00.000000", "candidate");
  const before = await get("v1/index.json");
  assert.equal(before.status, 200);
  assert.deepEqual(((await before.json()) as { index: object }).index, {}, "a candidate is not listed when only stable is published");
  assert.equal((await get(`bookworm-web/amd64/20261201/squashfs`)).status, 404, "its rootfs is not reachable through the tree");
  const r = await s.call("POST", `/v3/images/${id}/promote`, { to: "stable" });
  assert.equal(r.statusCode, 200, r.body);
  const p = await stableProducts();
  const product = p.products["org.kiln.stable:v3:boot:bookworm-web:amd64:generic"];
  assert.ok(product, JSON.stringify(p));
  assert.deepEqual(Object.keys(product.versions), ["20261201"]);
  assert.equal((await get(`bookworm-web/amd64/20261201/squashfs`)).status, 200);
});

test("streams: an image whose upload has not finished (no link) or whose label is not published is not in the tree", async () => {
  await addImage("2026-12-01T11:00:00.000000", "stable", false);
  await addImage("2026-12-01T12:00:00.000000", undefined);
  const p = await stableProducts();
  assert.deepEqual(Object.keys(p.products["org.kiln.stable:v3:boot:bookworm-web:amd64:generic"]!.versions), ["20261201"]);
});

test("streams: items are the store's objects, streamed without a copy in the store", async () => {
  const beforeFiles = await walk(s.dir);
  const p = await stableProducts();
  const item = p.products["org.kiln.stable:v3:boot:bookworm-web:amd64:generic"]!.versions["20261201"]!.items["boot-kernel"]!;
  const r = await fetch(`${base}/${item.path}`);
  assert.equal(r.status, 200);
  const body = Buffer.from(await r.arrayBuffer());
  assert.equal(createHash("sha256").update(body).digest("hex"), item.sha256);
  assert.equal(body.length, item.size);
  const afterFiles = (await walk(s.dir)).filter((f) => !f.includes(`${path.sep}pglite`) && !f.includes(`${path.sep}catalog`));
  assert.deepEqual(afterFiles, beforeFiles.filter((f) => !f.includes(`${path.sep}pglite`) && !f.includes(`${path.sep}catalog`)), "no new file in the store");
});

async function checkServed(): Promise<Awaited<ReturnType<typeof checkStream>>> {
  const r = await get("keyring.gpg");
  assert.equal(r.status, 200);
  const ring = path.join(keyDir, "keyring.gpg");
  await writeFile(ring, Buffer.from(await r.arrayBuffer()));
  return checkStream(openSource(`${base}/`), { keyring: ring });
}

test("streams: kiln streams check with the served keyring verifies every signature and item of the running service (all but the missing package manifest)", async () => {
  const report = await checkServed();
  assert.ok(report.signaturesChecked >= 2, "index.sjson and the products .sjson");
  assert.ok(report.files > 0, "items downloaded and hashed");
  // Jobs do not upload the squashfs package manifest yet (ftype manifest, which MAAS requires):
  // that one violation per version is the known gap (docs/service.md, "MAAS boot source").
  assert.deepEqual(report.violations.filter((v) => !v.message.includes('no "manifest"')), []);
});

test("streams: retention keeps the newest 2 versions per product, and the dropped one is unreachable", async () => {
  const ids = [await addImage("2026-12-02T10:00:00.000000", "candidate"), await addImage("2026-12-03T10:00:00.000000", "candidate")];
  for (const id of ids) assert.equal((await s.call("POST", `/v3/images/${id}/promote`, { to: "stable" })).statusCode, 200);
  const p = await stableProducts();
  assert.deepEqual(Object.keys(p.products["org.kiln.stable:v3:boot:bookworm-web:amd64:generic"]!.versions).sort(), ["20261202", "20261203"]);
  assert.equal((await get(`bookworm-web/amd64/20261201/squashfs`)).status, 404);
});

test("streams: the tree needs no token when open; other API routes still do", async () => {
  assert.equal((await get("v1/index.sjson")).status, 200);
  assert.equal((await fetch(`${base}/v3/images`)).status, 401);
});
