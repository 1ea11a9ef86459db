/**
 * One contract suite for ObjectStore (src/store/object-store.ts), run against each backend: the fs
 * store in a scratch directory (its presigned URLs answered by serveSignedObject on loopback) and
 * a real S3 server, Ceph RGW, started with scripts/s3-server.sh into /var/tmp and stopped at the
 * end (or reused when KILN_S3_URL is set: see test/helpers/servers.ts).
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createCipheriv, createHash } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { Readable } from "node:stream";
import v8 from "node:v8";
import vm from "node:vm";
import { isKilnError } from "../../src/errors.js";
import { serveSignedObject } from "../../src/store/fs-presign.js";
import { FsStore } from "../../src/store/fs-store.js";
import { ObjectNotFound, type ObjectStore } from "../../src/store/object-store.js";
import { openStore, resolveStore } from "../../src/store/open-store.js";
import { S3Store } from "../../src/store/s3-store.js";
import { s3Server } from "../helpers/servers.js";

// A real gc() lets each measurement start from what is live, not from garbage of the last one.
v8.setFlagsFromString("--expose-gc");
const gc = vm.runInNewContext("gc") as () => void;

const MiB = 1024 * 1024;
/**
 * Big enough that memory use proportional to the object would show: what a streamed put or get
 * may hold is a few parts in flight plus garbage V8 has not collected yet (it collects when
 * external memory has grown by 64 MiB): under 100 MB here, whatever the object's size.
 */
const BIG = 512 * MiB;
const MEMORY_BOUND = 160 * MiB;
/** Generated in chunks of this size, as fs.createReadStream reads; a divisor of every part size. */
const CHUNK = 64 * 1024;

interface Opened {
  store: ObjectStore;
  /** How the server came to be, for the test log. */
  info?: string;
  close(): Promise<void>;
}

interface Backend {
  name: string;
  /** The part size of streamed puts when the etag is S3's md5-of-part-md5s; none when it is the md5. */
  partSize?: number;
  open(): Promise<Opened>;
}

const fsBackend: Backend = {
  name: "fs",
  async open() {
    const dir = await mkdtemp(path.join("/var/tmp", "kiln-fs-store-"));
    // What the service does for fs stores: answer presigned URLs below its publicUrl.
    const server = createServer((req, res) => {
      serveSignedObject(store, (req.url ?? "/").slice(1), req, res).catch(() => res.destroy());
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as AddressInfo).port;
    const store = (await openStore(`file://${dir}`, { publicUrl: `http://127.0.0.1:${port}` })) as FsStore;
    return {
      store,
      close: async () => {
        server.closeAllConnections();
        await new Promise((resolve) => server.close(resolve));
        await store.close();
        await rm(dir, { recursive: true, force: true });
      },
    };
  },
};

const s3Backend: Backend = {
  name: "s3 (Ceph RGW)",
  partSize: 8 * MiB, // S3Store's default
  async open() {
    const t0 = performance.now();
    const server = await s3Server();
    const info = `s3 server ${server.started ? "started" : "reused"} in ${((performance.now() - t0) / 1000).toFixed(1)} s: ${server.startLog.replace(/\n/g, "; ")}`;
    try {
      const target = resolveStore(server.env.KILN_S3_URL!, { accessKey: server.env.KILN_S3_ACCESS_KEY, secretKey: server.env.KILN_S3_SECRET_KEY });
      if (target.kind !== "s3") throw new Error(`KILN_S3_URL is not an s3:// URL: ${server.env.KILN_S3_URL}`);
      // Copies above 64 MiB go part by part here (above 5 GiB in production), so the 200 MB copy
      // below takes that path.
      const store = new S3Store({ ...target.options, copyThreshold: 64 * MiB, copyPartSize: 32 * MiB });
      return {
        store,
        info,
        close: async () => {
          await store.close();
          await server.stop();
        },
      };
    } catch (e) {
      await server.stop();
      throw e;
    }
  },
};

for (const backend of [fsBackend, s3Backend]) {
  describe(`ObjectStore contract: ${backend.name}`, () => {
    let opened: Opened | undefined;
    let store: ObjectStore;
    // Unique per run: a reused S3 server may still hold the buckets of earlier runs.
    const bucket = `kiln-test-${Date.now().toString(36)}`;

    before(async () => {
      opened = await backend.open();
      store = opened.store;
      await store.ensureBucket(bucket);
      await store.ensureBucket(bucket); // idempotent
    });
    after(async () => {
      await opened?.close();
    });

    test("put, head and get round-trip the bytes, the content type and the metadata; etag is the md5", async (t) => {
      if (opened?.info) t.diagnostic(opened.info);
      const body = "#!ipxe\nkernel boot-kernel\n";
      const md5 = md5hex(Buffer.from(body));
      const put = await store.put(bucket, "img-1/boot_parameters", body, {
        contentType: "text/plain",
        metadata: { md5sum: md5, "X-Shasta-IMS-Image-Id": "img-1" },
      });
      assert.equal(put.etag, md5);
      assert.equal(put.size, Buffer.byteLength(body));
      const head = await store.head(bucket, "img-1/boot_parameters");
      assert.equal(head.etag, md5);
      assert.equal(head.size, put.size);
      assert.equal(head.contentType, "text/plain");
      // IMS's metadata, keys lower-cased as S3 does.
      assert.deepEqual(head.metadata, { md5sum: md5, "x-shasta-ims-image-id": "img-1" });
      assert.ok(Math.abs(head.lastModified.getTime() - Date.now()) < 60_000);
      assert.equal((await readAll(await store.get(bucket, "img-1/boot_parameters"))).toString(), body);

      const bytes = Buffer.from([0, 1, 2, 255]);
      const bin = await store.put(bucket, "img-1/binary", bytes);
      assert.equal(bin.contentType, "application/octet-stream");
      assert.deepEqual(await readAll(await store.get(bucket, "img-1/binary")), bytes);
    });

    test("a second put replaces the object", async () => {
      await store.put(bucket, "replace/me", "one");
      const second = await store.put(bucket, "replace/me", Readable.from([Buffer.from("two, "), Buffer.from("streamed")]));
      assert.equal(second.etag, md5hex(Buffer.from("two, streamed")));
      assert.equal((await readAll(await store.get(bucket, "replace/me"))).toString(), "two, streamed");
    });

    test("list returns the keys under a prefix in byte order, with sizes and etags", async () => {
      for (const key of ["list/b/d", "list/ba", "list/a", "list/b/c", "lists"]) await store.put(bucket, key, key);
      const under = await store.list(bucket, "list/");
      assert.deepEqual(under.map((o) => o.key), ["list/a", "list/b/c", "list/b/d", "list/ba"]);
      assert.deepEqual(under[0], { ...under[0], bucket, key: "list/a", size: 6, etag: md5hex(Buffer.from("list/a")) });
      assert.deepEqual((await store.list(bucket, "list/b")).map((o) => o.key), ["list/b/c", "list/b/d", "list/ba"]);
      assert.deepEqual((await store.list(bucket, "list/b/")).map((o) => o.key), ["list/b/c", "list/b/d"]);
      assert.deepEqual(await store.list(bucket, "nothing/here/"), []);
      assert.ok((await store.list(bucket)).some((o) => o.key === "lists"));
    });

    test("ranges: end inclusive, open-ended, clamped to the object; a range past the end is refused", async () => {
      await store.put(bucket, "range/obj", "0123456789abcdefghij");
      assert.equal((await readAll(await store.get(bucket, "range/obj", { start: 10, end: 19 }))).toString(), "abcdefghij");
      assert.equal((await readAll(await store.get(bucket, "range/obj", { start: 15 }))).toString(), "fghij");
      assert.equal((await readAll(await store.get(bucket, "range/obj", { start: 18, end: 1000 }))).toString(), "ij");
      await assert.rejects(store.get(bucket, "range/obj", { start: 20 }), (e) => isKilnError(e) && e.code === "INPUT_INVALID");
      await assert.rejects(store.get(bucket, "range/obj", { start: 5, end: 4 }), (e) => isKilnError(e) && e.code === "INPUT_INVALID");
    });

    test("missing keys and buckets: ObjectNotFound on get and head, delete is quiet, writes name the bucket", async () => {
      const notFound = (key: string, b = bucket) => (e: unknown) => e instanceof ObjectNotFound && e.key === key && e.bucket === b;
      await assert.rejects(store.get(bucket, "no/such/key"), notFound("no/such/key"));
      await assert.rejects(store.head(bucket, "no/such/key"), notFound("no/such/key"));
      await assert.rejects(store.copy(bucket, "no/such/key", "elsewhere"), notFound("no/such/key"));
      await store.delete(bucket, "no/such/key");
      const nobucket = "kiln-no-such-bucket";
      await assert.rejects(store.get(nobucket, "k"), notFound("k", nobucket));
      await assert.rejects(store.head(nobucket, "k"), notFound("k", nobucket));
      const missingBucket = (e: unknown) => isKilnError(e) && e.code === "STORE_FAILED" && e.message.includes(`bucket "${nobucket}" does not exist`);
      await assert.rejects(store.put(nobucket, "k", "v"), missingBucket);
      await assert.rejects(store.list(nobucket), missingBucket);
    });

    test("delete removes the object and leaves its neighbours", async () => {
      await store.put(bucket, "del/a/x", "x");
      await store.put(bucket, "del/b", "b");
      await store.delete(bucket, "del/a/x");
      await assert.rejects(store.head(bucket, "del/a/x"), ObjectNotFound);
      assert.deepEqual((await store.list(bucket, "del/")).map((o) => o.key), ["del/b"]);
      await store.put(bucket, "del/a", "a file where a folder was");
      assert.equal((await readAll(await store.get(bucket, "del/a"))).toString(), "a file where a folder was");
    });

    test("copy keeps the bytes, etag, content type and metadata (IMS soft delete: to deleted/<key>)", async () => {
      await store.put(bucket, "img-2/kernel", "vmlinuz", { contentType: "application/vnd.cray.image.kernel", metadata: { md5sum: md5hex(Buffer.from("vmlinuz")) } });
      const copy = await store.copy(bucket, "img-2/kernel", "deleted/img-2/kernel");
      const src = await store.head(bucket, "img-2/kernel");
      assert.equal(copy.key, "deleted/img-2/kernel");
      assert.equal(copy.etag, src.etag);
      assert.equal(copy.contentType, "application/vnd.cray.image.kernel");
      assert.deepEqual(copy.metadata, src.metadata);
      assert.equal((await readAll(await store.get(bucket, "deleted/img-2/kernel"))).toString(), "vmlinuz");
    });

    test("a put whose body fails or has another size than given stores nothing", async () => {
      const failing = Readable.from(
        (async function* () {
          for (let i = 0; i < 20; i++) yield Buffer.alloc(MiB, i); // past one S3 part: a multipart upload is under way
          throw new Error("the build was cancelled");
        })(),
      );
      await assert.rejects(store.put(bucket, "broken/rootfs", failing), (e) => isKilnError(e) && e.code === "STORE_FAILED" && /cancelled/.test(e.message));
      await assert.rejects(store.head(bucket, "broken/rootfs"), ObjectNotFound);
      await assert.rejects(store.put(bucket, "broken/short", Readable.from([Buffer.from("abc")]), { size: 4 }), (e) => isKilnError(e) && /3 bytes/.test(e.message));
      await assert.rejects(store.head(bucket, "broken/short"), ObjectNotFound);
    });

    test("a presigned GET works with plain fetch() (and a Range); a changed or expired URL is refused", async () => {
      await store.put(bucket, "signed/kernel", "kernel-bytes-0123456789");
      await store.put(bucket, "signed/initrd", "initrd, not for you");
      const url = await store.presignGet(bucket, "signed/kernel", 300);
      const whole = await fetch(url);
      assert.equal(whole.status, 200);
      assert.equal(await whole.text(), "kernel-bytes-0123456789");
      const part = await fetch(url, { headers: { range: "bytes=0-5" } });
      assert.equal(part.status, 206);
      assert.equal(await part.text(), "kernel");

      const otherKey = url.replace("signed/kernel", "signed/initrd");
      assert.notEqual(otherKey, url);
      assert.equal((await drain(fetch(otherKey))).status, 403);
      const u = new URL(url);
      const param = u.searchParams.has("X-Amz-Signature") ? "X-Amz-Signature" : "signature";
      const sig = u.searchParams.get(param)!;
      u.searchParams.set(param, sig.slice(0, -1) + (sig.endsWith("0") ? "1" : "0"));
      assert.equal((await drain(fetch(u))).status, 403);

      const brief = await store.presignGet(bucket, "signed/kernel", 1);
      await new Promise((r) => setTimeout(r, 2100));
      assert.equal((await drain(fetch(brief))).status, 403);
    });

    test(`a ${BIG / MiB} MiB stream goes up and comes down with bounded memory; etag, md5sum, copy`, async (t) => {
      const key = "img-big/rootfs";
      const expected = await digestOf(generated(BIG), backend.partSize);

      const up = await measure(() => store.put(bucket, key, generated(BIG), { contentType: "application/vnd.cray.image.rootfs.squashfs", metadata: { md5sum: expected.md5 } }));
      t.diagnostic(`put: ${figures(up)}`);
      assert.equal(up.result.size, BIG);
      // S3: 4 parts of 8 MiB in flight (lib-storage joins each part into one more buffer), plus
      // uncollected garbage: 80–90 MB seen; the fs store: up to ~40 MB, all of it garbage.
      assert.ok(up.rssGrowth < MEMORY_BOUND, `RSS grew by ${mb(up.rssGrowth)} MB while putting ${mb(BIG)} MB`);
      // S3 (quirk 1 in s3.md: RGW's Complete answer has no ETag, so put() HEADs) gives md5 of the
      // part md5s and the part count; the fs store gives the md5.
      assert.equal(up.result.etag, expected.etag);
      assert.equal((await store.head(bucket, key)).etag, expected.etag);
      assert.equal((await store.head(bucket, key)).metadata.md5sum, expected.md5);

      const down = await measure(async () => md5hex(await store.get(bucket, key)));
      t.diagnostic(`get: ${figures(down)}`);
      assert.equal(down.result, expected.md5);
      assert.ok(down.rssGrowth < MEMORY_BOUND, `RSS grew by ${mb(down.rssGrowth)} MB while getting ${mb(BIG)} MB`);

      // A range across the first part boundary.
      const at = (backend.partSize ?? 8 * MiB) - 5;
      const slice = await readAll(await store.get(bucket, key, { start: at, end: at + 9 }));
      assert.deepEqual(slice, (await readAll(generated(at + 10))).subarray(at));

      const copied = await measure(() => store.copy(bucket, key, `deleted/${key}`));
      t.diagnostic(`copy: ${figures(copied)}`);
      assert.equal(copied.result.size, BIG);
      assert.equal(copied.result.metadata.md5sum, expected.md5);
      assert.equal(await md5hex(await store.get(bucket, `deleted/${key}`)), expected.md5);

      await store.delete(bucket, key);
      await store.delete(bucket, `deleted/${key}`);
      await assert.rejects(store.head(bucket, key), ObjectNotFound);
    });
  });
}

// ── helpers ─────────────────────────────────────────────────────────────────────────────────

/** `size` pseudo-random bytes made on the fly (AES-CTR keystream: fast, and the same every time). */
function generated(size: number): Readable {
  return Readable.from(
    (async function* () {
      const cipher = createCipheriv("aes-128-ctr", Buffer.alloc(16, 7), Buffer.alloc(16, 0));
      const zeros = Buffer.alloc(CHUNK);
      for (let left = size; left > 0; left -= CHUNK) yield cipher.update(left >= CHUNK ? zeros : zeros.subarray(0, left));
    })(),
  );
}

/** The md5 of a stream, and the etag a store should report for it. */
async function digestOf(stream: Readable, partSize: number | undefined): Promise<{ md5: string; etag: string }> {
  const whole = createHash("md5");
  const partMd5s: Buffer[] = [];
  let part = createHash("md5");
  let inPart = 0;
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    whole.update(chunk);
    part.update(chunk);
    inPart += chunk.length;
    if (partSize && inPart === partSize) {
      partMd5s.push(part.digest());
      part = createHash("md5");
      inPart = 0;
    }
  }
  if (inPart > 0) partMd5s.push(part.digest());
  const md5 = whole.digest("hex");
  return { md5, etag: partSize ? `${createHash("md5").update(Buffer.concat(partMd5s)).digest("hex")}-${partMd5s.length}` : md5 };
}

interface Measured<T> {
  result: T;
  seconds: number;
  rssGrowth: number;
  peakRss: number;
}

/** Runs fn, sampling this process's RSS every 20 ms: how far it rose above where it started. */
async function measure<T>(fn: () => Promise<T>): Promise<Measured<T>> {
  gc();
  const base = process.memoryUsage.rss();
  let peak = base;
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage.rss())), 20);
  const t0 = performance.now();
  try {
    const result = await fn();
    peak = Math.max(peak, process.memoryUsage.rss());
    return { result, seconds: (performance.now() - t0) / 1000, rssGrowth: peak - base, peakRss: peak };
  } finally {
    clearInterval(timer);
  }
}

function figures(m: Measured<unknown>): string {
  return `${m.seconds.toFixed(1)} s (${(BIG / MiB / m.seconds).toFixed(0)} MiB/s), RSS +${mb(m.rssGrowth)} MB (peak ${mb(m.peakRss)} MB)`;
}

function mb(bytes: number): string {
  return (bytes / 1e6).toFixed(0);
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks);
}

function md5hex(data: Buffer): string;
function md5hex(data: Readable): Promise<string>;
function md5hex(data: Buffer | Readable): string | Promise<string> {
  if (Buffer.isBuffer(data)) return createHash("md5").update(data).digest("hex");
  return (async () => {
    const h = createHash("md5");
    for await (const c of data as AsyncIterable<Buffer>) h.update(c);
    return h.digest("hex");
  })();
}

/** Reads a refused response's body, so its connection is free again. */
async function drain(res: Promise<Response>): Promise<Response> {
  const r = await res;
  await r.arrayBuffer();
  return r;
}
