/**
 * The service's MAAS boot source (kiln serve --streams): a real catalog (PGlite) and fs store,
 * images inserted as a job's publish step leaves them, served on a real port and checked with
 * `kiln streams check`'s code and gpgv; promotion through the API; retention; unpublished labels
 * unreachable; items streamed from the store, not copied.
 */
import assert from "node:assert/strict";
import { createHash, randomUUID } from "node:crypto";
import { mkdir, readdir, writeFile, mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { ARTIFACT_KINDS } from "../../src/artifacts/types.js";
import { BOOT_IMAGES_BUCKET } from "../../src/catalog/objects.js";
import type { ImageRecord } from "../../src/catalog/records.js";
import { checkStream, openSource } from "../../src/streams/check.js";
import type { ProductsFile } from "../../src/streams/format.js";
import { openSigner, type Signer } from "../../src/streams/sign.js";
import { READER, startTestService, type TestService } from "../helpers/service.js";
import { throwawayKey } from "../helpers/streams.js";

let s: TestService;
let signer: Signer;
let keyDir: string;
let base: string;
let secretKey: string;

async function walk(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) out.push(...(e.isDirectory() ? await walk(path.join(dir, e.name)) : [path.join(dir, e.name)]));
  return out.sort();
}

/** The attestations a job uploads beside the image (docs/attest.md): extra items of each version. */
const ATTESTATIONS = [ARTIFACT_KINDS.sbomSpdx, ARTIFACT_KINDS.sbomCycloneDx, ARTIFACT_KINDS.provenance, ARTIFACT_KINDS.checksums, ARTIFACT_KINDS.checksumsSignature];

const UPLOADED: ReadonlyArray<readonly [string, string, string | undefined]> = [
  ["rootfs", "application/vnd.cray.image.rootfs.squashfs", undefined],
  ["kernel", "application/vnd.cray.image.kernel", "generic"],
  ["initrd", "application/vnd.cray.image.initrd", "generic"],
  ["rootfs.manifest", "text/tab-separated-values", undefined],
  ...ATTESTATIONS.map((k) => [k.imsKey, k.type, undefined] as const),
];

/**
 * An image record and its objects as publishImage leaves them: artifacts with sha256 metadata, a
 * manifest, then the link. `withPackageList: false` is an image uploaded before jobs stored the
 * squashfs's package list.
 */
async function addImage(created: string, label: string | undefined, link = true, withPackageList = true): Promise<string> {
  const id = randomUUID();
  const artifacts: Array<Record<string, unknown>> = [];
  for (const [base, type, flavor] of UPLOADED.filter(([b]) => withPackageList || b !== "rootfs.manifest")) {
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
  secretKey = (await throwawayKey(keyDir)).secret;
  signer = await openSigner(secretKey);
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

test("streams: kiln streams check with the served keyring verifies every signature and item of the running service", async () => {
  const report = await checkServed();
  assert.ok(report.signaturesChecked >= 2, "index.sjson and the products .sjson");
  assert.ok(report.files > 0, "items downloaded and hashed");
  assert.deepEqual(report.violations, []);
  const item = (await stableProducts()).products["org.kiln.stable:v3:boot:bookworm-web:amd64:generic"]!.versions["20261201"]!.items.manifest;
  assert.equal(item?.ftype, "manifest", "the package list MAAS requires is an item");
  assert.equal(item?.path, "streams/bookworm-web/amd64/20261201/squashfs.manifest", "placed as kiln streams publish places it");
});

test("streams: SBOMs, provenance and SHA256SUMS(.gpg) are extra items of every version, named as in an out dir; the checker (MAAS' rules) accepts them", async () => {
  const items = (await stableProducts()).products["org.kiln.stable:v3:boot:bookworm-web:amd64:generic"]!.versions["20261201"]!.items;
  for (const k of ATTESTATIONS) {
    const item = items[k.ftype];
    assert.equal(item?.ftype, k.ftype, k.name);
    assert.equal(item?.path, `streams/bookworm-web/amd64/20261201/${k.name}`, "placed as kiln streams publish places an out dir's file");
    const body = Buffer.from(await (await fetch(`${base}/${item.path}`)).arrayBuffer());
    assert.equal(createHash("sha256").update(body).digest("hex"), item.sha256, `${k.name} is served with the sha256 the stream gives`);
  }
  assert.deepEqual(Object.keys(items).sort(), ["boot-initrd", "boot-kernel", "manifest", "provenance.json", "sbom.cdx.json", "sbom.spdx.json", "sha256sums", "sha256sums.gpg", "squashfs"]);
  const report = await checkServed();
  assert.deepEqual(report.violations, []);
});

test("streams: a version without its package list (uploaded before jobs stored it) is not listed, as MAAS could not import it", async () => {
  const id = await addImage("2026-12-01T13:00:00.000000", "stable", true, false);
  const versions = (await stableProducts()).products["org.kiln.stable:v3:boot:bookworm-web:amd64:generic"]!.versions;
  assert.ok(!Object.values(versions).some((v) => v.kiln_image_id === id), JSON.stringify(versions));
  assert.equal((await s.call("DELETE", `/v3/images/${id}`)).statusCode, 204);
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

test("streams: bootloader products of a kiln streams bootloaders folder are listed, signed and served from it; nothing outside it is", async () => {
  const dir = path.join(keyDir, "loaders");
  const rel = "bootloaders/uefi/amd64/20261201.0/shim-signed.tar.xz";
  await mkdir(path.dirname(path.join(dir, rel)), { recursive: true });
  const body = Buffer.from("not really a tarball, but bytes with a sha256\n");
  await writeFile(path.join(dir, rel), body);
  await writeFile(path.join(keyDir, "outside"), "a file outside the folder\n");
  const item = (p: string) => ({ ftype: "archive.tar.xz", path: p, sha256: createHash("sha256").update(body).digest("hex"), size: body.length, src_package: "shim-signed", src_release: "bookworm", src_version: "1.44" });
  const products: ProductsFile = {
    content_id: "org.kiln:stable:1:bootloader-download", datatype: "image-downloads", format: "products:1.0", updated: "Tue, 01 Dec 2026 00:00:00 +0000",
    products: {
      "org.kiln.stable:1:grub-efi-signed:uefi:amd64": { arch: "amd64", arches: "amd64", "bootloader-type": "uefi", label: "stable", os: "grub-efi-signed", versions: { "20261201.0": { items: { "shim-signed": item(rel) } } } },
      "org.kiln.stable:1:pxelinux:pxe:i386": { arch: "i386", arches: "i386,amd64", "bootloader-type": "pxe", label: "stable", os: "pxelinux", versions: { "20261201.0": { items: { syslinux: item("../outside") } } } },
    },
  };
  await mkdir(path.join(dir, "streams/v1"), { recursive: true });
  await writeFile(path.join(dir, "streams/v1/org.kiln:stable:1:bootloader-download.json"), JSON.stringify(products));
  // A service closes its signer with it: each service here gets its own.
  const t = await startTestService({ streams: { access: "open", labels: ["stable"], signer: await openSigner(secretKey), bootloaders: dir } });
  try {
    await t.app.listen({ host: "127.0.0.1", port: 0 });
    const url = `http://127.0.0.1:${(t.app.server.address() as { port: number }).port}`;
    const index = (await (await fetch(`${url}/streams/v1/index.json`)).json()) as { index: Record<string, { products: string[] }> };
    assert.deepEqual(index.index["org.kiln:stable:1:bootloader-download"]?.products, ["org.kiln.stable:1:grub-efi-signed:uefi:amd64"], "the product whose item points outside the folder is dropped");
    const served = await fetch(`${url}/streams/${rel}`);
    assert.equal(served.status, 200);
    assert.deepEqual(Buffer.from(await served.arrayBuffer()), body);
    const escape = await fetch(`${url}/streams/outside`);
    assert.equal(escape.status, 404);
    const ring = path.join(keyDir, "keyring-loaders.gpg");
    await writeFile(ring, Buffer.from(await (await fetch(`${url}/streams/keyring.gpg`)).arrayBuffer()));
    const report = await checkStream(openSource(`${url}/`), { keyring: ring });
    assert.equal(report.signaturesChecked, 2, "index.sjson and the bootloader products' .sjson");
    assert.deepEqual(report.violations, []);
  } finally {
    await t.close();
  }
});

test("streams: --streams token needs an API token (read-only will do) for the tree and its items", async () => {
  const t = await startTestService({ streams: { access: "token", labels: ["stable"], signer: await openSigner(secretKey) } });
  try {
    const anonymous = await t.app.inject({ method: "GET", url: "/streams/v1/index.json" });
    assert.equal(anonymous.statusCode, 401);
    assert.match(anonymous.headers["content-type"] as string, /problem\+json/);
    const reader = await t.call("GET", "/streams/v1/index.json", undefined, READER);
    assert.equal(reader.statusCode, 200, reader.body);
    assert.equal((await t.call("GET", "/streams/keyring.gpg", undefined, READER)).statusCode, 200);
  } finally {
    await t.close();
  }
});
