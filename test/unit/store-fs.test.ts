/** What only the fs store does: its layout on disk, its sidecars, its keys and its presigned URLs. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtemp, readdir, readFile, rename, rm, stat, utimes, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { isKilnError } from "../../src/errors.js";
import { signObjectUrl, verifyObjectUrl } from "../../src/store/fs-presign.js";
import { FsStore } from "../../src/store/fs-store.js";

async function withStore(fn: (store: FsStore, root: string) => Promise<void>, opts: { publicUrl?: string } = {}): Promise<void> {
  const root = await mkdtemp(path.join(os.tmpdir(), "kiln-fs-store-"));
  try {
    const store = await FsStore.open({ root, ...opts });
    await store.ensureBucket("boot-images");
    await fn(store, root);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

const badRequest = (e: unknown) => isKilnError(e) && e.code === "INPUT_INVALID";

test("an object is a plain file at <root>/<bucket>/<key>, its metadata a sidecar under .kiln/meta", () =>
  withStore(async (store, root) => {
    await store.put("boot-images", "img-1/rootfs", "squash", { metadata: { md5sum: "x" } });
    assert.equal(await readFile(path.join(root, "boot-images/img-1/rootfs"), "utf8"), "squash");
    const side = JSON.parse(await readFile(path.join(root, ".kiln/meta/boot-images/img-1/rootfs"), "utf8"));
    assert.equal(side.etag, createHash("md5").update("squash").digest("hex"));
    assert.deepEqual(side.metadata, { md5sum: "x" });
    assert.deepEqual(await readdir(path.join(root, ".kiln/tmp")), []);
    assert.equal(store.url, `file://${root}`);
  }));

test("keys that are not clean relative paths, and bad bucket names, are refused", () =>
  withStore(async (store) => {
    for (const key of ["", "../escape", "a/../../b", "/abs", "a//b", "a/./b", "dir/", "nul\0byte"]) {
      await assert.rejects(store.put("boot-images", key, "x"), badRequest, JSON.stringify(key));
      await assert.rejects(store.head("boot-images", key), badRequest, JSON.stringify(key));
    }
    for (const bucket of ["..", "Boot-Images", "a", ".kiln", "x/y"]) await assert.rejects(store.ensureBucket(bucket), badRequest, bucket);
    assert.deepEqual(await store.list("boot-images", "../"), []);
  }));

test("a key cannot be both an object and a folder of objects (a, a/b)", () =>
  withStore(async (store) => {
    await store.put("boot-images", "a", "file");
    await assert.rejects(store.put("boot-images", "a/b", "x"), (e) => badRequest(e) && /clashes/.test((e as Error).message));
    await store.put("boot-images", "c/d", "x");
    await assert.rejects(store.put("boot-images", "c", "x"), (e) => badRequest(e) && /clashes/.test((e as Error).message));
    assert.deepEqual((await store.list("boot-images")).map((o) => o.key), ["a", "c/d"]);
  }));

test("delete removes folders it leaves empty, in the data and the sidecar trees", () =>
  withStore(async (store, root) => {
    await store.put("boot-images", "img-2/deep/kernel", "k");
    await store.delete("boot-images", "img-2/deep/kernel");
    assert.deepEqual(await readdir(path.join(root, "boot-images")), []);
    assert.deepEqual(await readdir(path.join(root, ".kiln/meta/boot-images")), []);
  }));

test("data renamed without its sidecar (a crash between the renames): the etag is recomputed", () =>
  withStore(async (store, root) => {
    await store.put("boot-images", "img-3/initrd", "old", { metadata: { md5sum: "old" } });
    // What put() does up to its first rename: a new file renamed over the old one, no new sidecar.
    await writeFile(path.join(root, ".kiln/tmp/crashed"), "new content");
    await rename(path.join(root, ".kiln/tmp/crashed"), path.join(root, "boot-images/img-3/initrd"));
    const head = await store.head("boot-images", "img-3/initrd");
    assert.equal(head.etag, createHash("md5").update("new content").digest("hex"));
    assert.equal(head.size, 11);
    assert.deepEqual(head.metadata, {});
  }));

test("open() removes temp files a killed process left a day ago, and keeps fresh ones", async () => {
  const root = await mkdtemp(path.join(os.tmpdir(), "kiln-fs-store-"));
  try {
    await FsStore.open({ root });
    const old = path.join(root, ".kiln/tmp/old");
    const fresh = path.join(root, ".kiln/tmp/fresh");
    await writeFile(old, "x");
    await writeFile(fresh, "x");
    const dayAgo = new Date(Date.now() - 25 * 3600_000);
    await utimes(old, dayAgo, dayAgo);
    await FsStore.open({ root });
    await assert.rejects(stat(old));
    await stat(fresh);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

test("presignGet needs publicUrl; its URLs are signed with a key every store on the root shares", async () => {
  await withStore(async (store) => {
    await assert.rejects(
      store.presignGet("boot-images", "img/rootfs", 60),
      (e) => isKilnError(e) && e.code === "STORE_CONFIG" && /"publicUrl" is required.*\(env KILN_STORE_PUBLIC_URL\)$/.test(e.message),
    );
  });
  await withStore(
    async (store, root) => {
      const url = await store.presignGet("boot-images", "img 4/root fs", 60);
      assert.match(url, /^http:\/\/kiln:8080\/objects\/boot-images\/img%204\/root%20fs\?expires=\d+&signature=[0-9a-f]{64}$/);
      const other = await FsStore.open({ root });
      const target = url.slice("http://kiln:8080/objects/".length);
      assert.deepEqual(await other.checkPresigned(target), { ok: true, bucket: "boot-images", key: "img 4/root fs" });
      assert.equal((await stat(path.join(root, ".kiln/signing-key"))).mode & 0o777, 0o600);
    },
    { publicUrl: "http://kiln:8080/objects/" },
  );
});

test("a presigned URL is refused when its key, expiry or signature changes, or when it has expired", () => {
  const now = Date.UTC(2026, 0, 1);
  const url = signObjectUrl("http://h", "secret", "boot-images", "img/rootfs", 300, now);
  const target = url.slice("http://h/".length);
  assert.deepEqual(verifyObjectUrl("secret", target, now), { ok: true, bucket: "boot-images", key: "img/rootfs" });
  assert.deepEqual(verifyObjectUrl("secret", target, now + 301_000), { ok: false, reason: "URL expired" });
  assert.deepEqual(verifyObjectUrl("other secret", target, now), { ok: false, reason: "signature does not match" });
  assert.deepEqual(verifyObjectUrl("secret", target.replace("rootfs", "kernel"), now), { ok: false, reason: "signature does not match" });
  assert.deepEqual(verifyObjectUrl("secret", target.replace(/expires=(\d+)/, (_m, n: string) => `expires=${Number(n) + 3600}`), now), {
    ok: false,
    reason: "signature does not match",
  });
  assert.deepEqual(verifyObjectUrl("secret", "boot-images/img/rootfs", now), { ok: false, reason: "not a presigned object URL" });
  assert.deepEqual(verifyObjectUrl("secret", "boot-images/%E0%A4%A/x?expires=1&signature=00", now), { ok: false, reason: "malformed URL" });
});
