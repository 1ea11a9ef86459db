/**
 * Presigned download URLs (GET /v3/images/{id}/urls, `kiln ims images urls`) against real `kiln
 * serve` processes, with each store:
 *  - the filesystem store: the URLs point at the service itself (/objects/ below its public URL,
 *    by default the --listen address with the port it got) and need no token;
 *  - S3 (Ceph RGW, started once by scripts/s3-server.sh): the URLs are SigV4 and point at RGW.
 * The same suite runs on both: the URL downloads with no token and matches the manifest's md5,
 * a Range, a changed or expired URL is 403, read-only tokens may list, unknown image 404.
 * Images are made as a job makes them (record, objects, then the link), with no build.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type AddressInfo } from "node:net";
import path from "node:path";
import { BOOT_IMAGES_BUCKET } from "../../src/catalog/objects.js";
import type { ObjectStore } from "../../src/store/object-store.js";
import { openStore } from "../../src/store/open-store.js";
import { runKiln } from "../helpers/kiln.js";
import { s3Server, type TestServer } from "../helpers/servers.js";
import { createToken, startServe, type ServiceProcess } from "../helpers/service-process.js";
import type { ImageUrls } from "../../src/cli/commands/ims.js";

interface Target {
  kind: "fs" | "s3";
  serve: ServiceProcess;
  store: ObjectStore;
  admin: string;
  reader: string;
  /** Where the URLs must point: the service's /objects/ or the S3 server. */
  urlPrefix: string;
  /** The URL's expiry parameter (changing it must break the signature). */
  expiryParam: string;
  /** The URL's signature parameter. */
  signatureParam: string;
}

interface MadeImage {
  id: string;
  /** Bytes of each artifact, by its s3:// path. */
  bytes: Map<string, Buffer>;
  manifestText: string;
}

const ROOTFS = "application/vnd.cray.image.rootfs.squashfs";
const md5 = (b: Buffer | string) => createHash("md5").update(b).digest("hex");

async function call(t: Target, method: string, url: string, token: string | null, body?: unknown): Promise<Response> {
  return fetch(t.serve.url + url, {
    method,
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body !== undefined ? { "content-type": "application/json" } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
}

/** An image as a create job leaves it: a record, the artifacts (two flavors) and manifest.json, then the link. */
async function makeImage(t: Target): Promise<MadeImage> {
  const created = await call(t, "POST", "/v3/images", t.admin, { name: `presign-${randomUUID().slice(0, 8)}` });
  assert.equal(created.status, 201, await created.clone().text());
  const { id } = (await created.json()) as { id: string };
  const files: Array<{ key: string; type: string; bytes: Buffer; flavor?: string }> = [
    { key: "rootfs", type: ROOTFS, bytes: randomBytes(300_000) },
    { key: "kernel", type: "application/vnd.cray.image.kernel", bytes: randomBytes(40_000), flavor: "generic" },
    { key: "initrd", type: "application/vnd.cray.image.initrd", bytes: randomBytes(60_000), flavor: "generic" },
    { key: "rt/kernel", type: "application/vnd.cray.image.kernel", bytes: randomBytes(41_000), flavor: "rt" },
  ];
  const bytes = new Map<string, Buffer>();
  const artifacts = [];
  for (const f of files) {
    const key = `${id}/${f.key}`;
    const info = await t.store.put(BOOT_IMAGES_BUCKET, key, f.bytes, { contentType: f.type, metadata: { md5sum: md5(f.bytes) } });
    const s3 = `s3://${BOOT_IMAGES_BUCKET}/${key}`;
    bytes.set(s3, f.bytes);
    artifacts.push({ link: { path: s3, etag: info.etag, type: "s3" }, md5: md5(f.bytes), type: f.type, ...(f.flavor ? { flavor: f.flavor } : {}) });
  }
  const manifestText = JSON.stringify({ version: "1.0", created: "2025-01-01 00:00:00", artifacts }, null, 4);
  await t.store.put(BOOT_IMAGES_BUCKET, `${id}/manifest.json`, manifestText, { contentType: "application/json" });
  const linked = await call(t, "PATCH", `/v3/images/${id}`, t.admin, { link: { path: `s3://${BOOT_IMAGES_BUCKET}/${id}/manifest.json`, type: "s3" } });
  assert.equal(linked.status, 200, await linked.clone().text());
  return { id, bytes, manifestText };
}

async function urlsOf(t: Target, id: string, expires?: number): Promise<ImageUrls> {
  const r = await call(t, "GET", `/v3/images/${id}/urls${expires === undefined ? "" : `?expires=${expires}`}`, t.reader);
  assert.equal(r.status, 200, await r.clone().text());
  return (await r.json()) as ImageUrls;
}

/** A fetch with no Authorization header whatsoever: the URL alone must do. */
async function fetchBytes(url: string | URL, init: RequestInit = {}): Promise<{ status: number; headers: Headers; body: Buffer }> {
  const r = await fetch(url, init);
  return { status: r.status, headers: r.headers, body: Buffer.from(await r.arrayBuffer()) };
}

function definePresignSuite(target: () => Target): void {
  let image: MadeImage;
  let urls: ImageUrls;
  const t = () => target();
  const rootfsUrl = () => urls.artifacts.find((a) => a.type === ROOTFS)!.url;

  before(async () => {
    image = await makeImage(t());
    urls = await urlsOf(t(), image.id, 600);
  });

  test("a read-only token lists the URLs; each downloads with no token and matches the manifest's md5", async () => {
    assert.equal(urls.image_id, image.id);
    assert.equal(urls.expires_in, 600);
    const left = (Date.parse(urls.expires_at) - Date.now()) / 1000;
    assert.ok(left > 590 && left <= 601, `expires_at ${urls.expires_at} is ${left} s away`);
    assert.deepEqual(
      urls.artifacts.map((a) => [a.path.replace(image.id, "ID"), a.flavor ?? null]),
      [
        ["s3://boot-images/ID/rootfs", null],
        ["s3://boot-images/ID/kernel", "generic"],
        ["s3://boot-images/ID/initrd", "generic"],
        ["s3://boot-images/ID/rt/kernel", "rt"],
      ],
    );
    for (const a of [...urls.artifacts, urls.manifest]) assert.ok(a.url.startsWith(t().urlPrefix), `${a.url} starts with ${t().urlPrefix}`);
    for (const a of urls.artifacts) {
      const got = await fetchBytes(a.url);
      assert.equal(got.status, 200, `${a.path}: ${got.body.toString().slice(0, 300)}`);
      assert.equal(md5(got.body), a.md5, `${a.path}: md5 of the download`);
      assert.equal(a.md5, md5(image.bytes.get(a.path)!));
      assert.equal(got.headers.get("content-length"), String(got.body.length));
      assert.equal(got.headers.get("x-amz-meta-md5sum"), a.md5);
    }
    const manifest = await fetchBytes(urls.manifest.url);
    assert.equal(manifest.status, 200);
    assert.equal(manifest.body.toString(), image.manifestText);
  });

  test("Range requests: 206 with Content-Range, a suffix range, 416 past the end", async () => {
    const whole = image.bytes.get(`s3://boot-images/${image.id}/rootfs`)!;
    const part = await fetchBytes(rootfsUrl(), { headers: { range: "bytes=1000-1999" } });
    assert.equal(part.status, 206);
    assert.equal(part.headers.get("content-range"), `bytes 1000-1999/${whole.length}`);
    assert.deepEqual(part.body, whole.subarray(1000, 2000));
    const tail = await fetchBytes(rootfsUrl(), { headers: { range: "bytes=-16" } });
    assert.equal(tail.status, 206);
    assert.deepEqual(tail.body, whole.subarray(whole.length - 16));
    // The way to learn the size through a GET-signed URL on every store (S3 signs the method).
    const first = await fetchBytes(rootfsUrl(), { headers: { range: "bytes=0-0" } });
    assert.equal(first.headers.get("content-range"), `bytes 0-0/${whole.length}`);
    const past = await fetchBytes(rootfsUrl(), { headers: { range: `bytes=${whole.length}-` } });
    assert.equal(past.status, 416);
  });

  test("a changed signature, key or expiry is refused with 403, and so is an expired URL", async () => {
    const refused = async (url: string | URL, what: string) => {
      const r = await fetchBytes(url);
      assert.equal(r.status, 403, `${what}: ${r.status} ${r.body.toString().slice(0, 300)}`);
      if (t().kind === "fs") {
        assert.equal(r.headers.get("content-type"), "application/problem+json; charset=utf-8");
        const p = JSON.parse(r.body.toString()) as { status: number; code: string; detail: string };
        assert.equal(p.status, 403);
        assert.equal(p.code, "FORBIDDEN");
        assert.match(p.detail, /presigned URL refused/);
      } else {
        assert.match(r.body.toString(), /<Code>(SignatureDoesNotMatch|AccessDenied)<\/Code>/);
      }
      return r;
    };
    const u = new URL(rootfsUrl());
    const sig = u.searchParams.get(t().signatureParam)!;
    assert.ok(sig, `the URL has ${t().signatureParam}`);
    u.searchParams.set(t().signatureParam, sig.slice(0, -1) + (sig.endsWith("0") ? "1" : "0"));
    await refused(u, "changed signature");

    const kernel = urls.artifacts.find((a) => a.path.endsWith("/kernel"))!;
    const otherKey = rootfsUrl().replace(`${image.id}/rootfs`, `${image.id}/initrd`);
    assert.notEqual(otherKey, rootfsUrl());
    await refused(otherKey, "another key with the rootfs' signature");

    const longer = new URL(kernel.url);
    longer.searchParams.set(t().expiryParam, String(Number(longer.searchParams.get(t().expiryParam)) + 3600));
    await refused(longer, "a later expiry");

    const brief = await urlsOf(t(), image.id, 1);
    await new Promise((r) => setTimeout(r, 2100));
    for (const a of brief.artifacts) await refused(a.url, `${a.path} after it expired`);
    // The long-lived URL of the same object still works.
    assert.equal((await fetchBytes(kernel.url)).status, 200);
  });

  test("the URLs route: 404 for an unknown image, 409 without a link, 422 for a bad expiry, 401 with no token", async () => {
    const unknown = await call(t(), "GET", `/v3/images/${randomUUID()}/urls`, t().reader);
    assert.equal(unknown.status, 404);
    assert.equal(((await unknown.json()) as { code: string }).code, "NOT_FOUND");

    const bare = (await (await call(t(), "POST", "/v3/images", t().admin, { name: "not-linked-yet" })).json()) as { id: string };
    const unlinked = await call(t(), "GET", `/v3/images/${bare.id}/urls`, t().reader);
    assert.equal(unlinked.status, 409);
    assert.match(((await unlinked.json()) as { detail: string }).detail, /has no link yet/);

    for (const bad of ["0", "604801", "soon", "-5"]) {
      const r = await call(t(), "GET", `/v3/images/${image.id}/urls?expires=${bad}`, t().reader);
      assert.equal(r.status, 422, `expires=${bad}`);
    }
    const week = await call(t(), "GET", `/v3/images/${image.id}/urls?expires=604800`, t().reader);
    assert.equal(week.status, 200, "7 days is allowed (S3's limit)");
    const defaults = await urlsOf(t(), image.id);
    assert.equal(defaults.expires_in, 3600);
    assert.equal((await call(t(), "GET", `/v3/images/${image.id}/urls`, null)).status, 401);
  });

  test("an object deleted after its URL was handed out is 404", async () => {
    const other = await makeImage(t());
    const u = await urlsOf(t(), other.id, 300);
    const initrd = u.artifacts.find((a) => a.path.endsWith("/initrd"))!;
    assert.equal((await fetchBytes(initrd.url)).status, 200);
    await t().store.delete(BOOT_IMAGES_BUCKET, `${other.id}/initrd`);
    const gone = await fetchBytes(initrd.url);
    assert.equal(gone.status, 404, gone.body.toString().slice(0, 300));
  });

  test("kiln ims images urls ID prints them as a table, or --json; --expires", async () => {
    const env = { KILN_URL: t().serve.url, KILN_TOKEN: t().reader };
    const json = await runKiln(["ims", "images", "urls", image.id, "--expires", "120", "--json"], { env });
    assert.equal(json.code, 0, json.stderr);
    const parsed = JSON.parse(json.stdout) as ImageUrls;
    assert.equal(parsed.expires_in, 120);
    assert.equal(parsed.artifacts.length, 4);
    const rt = parsed.artifacts.find((a) => a.flavor === "rt")!;
    assert.equal(md5((await fetchBytes(rt.url)).body), rt.md5);

    const text = await runKiln(["ims", "images", "urls", image.id], { env });
    assert.equal(text.code, 0, text.stderr);
    const lines = text.stdout.trimEnd().split("\n");
    assert.match(lines[0]!, new RegExp(`^# image ${image.id}: valid until \\S+Z \\(3600 s\\)$`));
    assert.match(lines[1]!, /^TYPE +FLAVOR +MD5 +URL$/);
    assert.equal(lines.length, 2 + 5, "four artifacts and the manifest");
    assert.match(lines[2]!, new RegExp(`^${ROOTFS.replace(/\./g, "\\.")} +- +[0-9a-f]{32} +${t().urlPrefix.replace(/[.?*+]/g, "\\$&")}`));
    assert.match(lines.at(-1)!, /^manifest\.json +- +- +\S+manifest\.json/);

    const missing = await runKiln(["ims", "images", "urls", randomUUID()], { env });
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /404 no image with id/);
  });
}

describe("presigned URLs with the filesystem store (answered by kiln serve at /objects/)", () => {
  let dir: string;
  let target: Target;
  before(async () => {
    dir = await mkdtemp("/var/tmp/kiln-presign-fs-");
    const data = path.join(dir, "data");
    const admin = await createToken(data, "admin");
    const reader = await createToken(data, "read-only");
    const serve = await startServe(["--data-dir", data, "--no-worker"]);
    const store = await openStore(`file://${path.join(data, "objects")}`);
    target = { kind: "fs", serve, store, admin, reader, urlPrefix: `${serve.url}/objects/boot-images/`, expiryParam: "expires", signatureParam: "signature" };
  });
  after(async () => {
    assert.equal(await target?.serve.stop(), 143, "SIGTERM: exit 143 after a clean stop");
    await target?.store.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  definePresignSuite(() => target);

  test("with --listen 127.0.0.1:0 the URLs carry the port the service got; HEAD answers like S3's", async () => {
    const port = new URL(target.serve.url).port;
    assert.ok(Number(port) > 0);
    assert.match(target.serve.output().stderr, new RegExp(`presigned download URLs point at http://127\\.0\\.0\\.1:${port}/objects/`));
    const image = await makeImage(target);
    const u = await urlsOf(target, image.id, 60);
    const rootfs = u.artifacts[0]!;
    assert.equal(new URL(rootfs.url).port, port);
    const head = await fetchBytes(rootfs.url, { method: "HEAD" });
    assert.equal(head.status, 200);
    assert.equal(head.body.length, 0);
    assert.equal(head.headers.get("content-length"), String(image.bytes.get(rootfs.path)!.length));
    assert.equal(head.headers.get("accept-ranges"), "bytes");
    assert.equal(head.headers.get("content-type"), ROOTFS);
    assert.match(head.headers.get("etag") ?? "", /^"[0-9a-f]{32}"$/);
    // No token, and another method than GET/HEAD is not an object read.
    assert.notEqual((await fetch(rootfs.url, { method: "DELETE" })).status, 200);
    assert.equal((await target.store.head(BOOT_IMAGES_BUCKET, `${image.id}/rootfs`)).size, image.bytes.get(rootfs.path)!.length);
  });

  test("--public-url (env KILN_PUBLIC_URL) sets where the URLs point; /apis/ims/objects/ answers them too", async () => {
    const port = await freePort();
    const data = path.join(dir, "public");
    const admin = await createToken(data, "admin");
    const serve = await startServe(["--data-dir", data, "--no-worker", "--listen", `127.0.0.1:${port}`], { KILN_PUBLIC_URL: `http://localhost:${port}/apis/ims/` });
    const store = await openStore(`file://${path.join(data, "objects")}`);
    try {
      const t2: Target = { ...target, serve, store, admin, reader: admin, urlPrefix: `http://localhost:${port}/apis/ims/objects/boot-images/` };
      const image = await makeImage(t2);
      const u = await urlsOf(t2, image.id, 60);
      for (const a of u.artifacts) {
        assert.ok(a.url.startsWith(t2.urlPrefix), a.url);
        const got = await fetchBytes(a.url);
        assert.equal(got.status, 200, got.body.toString().slice(0, 300));
        assert.equal(md5(got.body), a.md5);
      }
    } finally {
      await serve.stop();
      await store.close();
    }
    const bad = await runKiln(["serve", "--data-dir", data, "--no-worker", "--listen", "127.0.0.1:0", "--public-url", "kiln.example:8080"]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--public-url "kiln\.example:8080" \(--public-url\): use an http\(s\) URL/);
  });
});

describe("presigned URLs with S3 (Ceph RGW answers them)", () => {
  let s3: TestServer;
  let dir: string;
  let target: Target;
  before(async () => {
    s3 = await s3Server();
    dir = await mkdtemp("/var/tmp/kiln-presign-s3-");
    const data = path.join(dir, "data");
    const admin = await createToken(data, "admin");
    const reader = await createToken(data, "read-only");
    const storeUrl = s3.env.KILN_S3_URL!;
    const serve = await startServe(["--data-dir", data, "--no-worker", "--store", storeUrl], s3.env);
    const store = await openStore(storeUrl, { env: s3.env });
    const endpoint = new URL(storeUrl.replace(/^s3:/, "http:"));
    target = { kind: "s3", serve, store, admin, reader, urlPrefix: `http://${endpoint.host}/boot-images/`, expiryParam: "X-Amz-Expires", signatureParam: "X-Amz-Signature" };
  });
  after(async () => {
    await target?.serve.stop();
    await target?.store.close();
    await s3?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  definePresignSuite(() => target);

  test("S3 signs the method: a presigned GET URL does not answer HEAD (use Range: bytes=0-0); the service's /objects/ is 404", async () => {
    const image = await makeImage(target);
    const u = await urlsOf(target, image.id, 60);
    assert.equal((await fetchBytes(u.artifacts[0]!.url, { method: "HEAD" })).status, 403);
    const objects = await fetchBytes(`${target.serve.url}/objects/boot-images/${image.id}/rootfs?expires=1&signature=00`);
    assert.equal(objects.status, 404);
    assert.match(objects.body.toString(), /presigned URLs point at the S3 server itself/);
  });
});

/** A loopback port free right now (for a --listen that must be known before the service starts). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}
