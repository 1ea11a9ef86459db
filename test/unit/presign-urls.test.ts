/**
 * The pure parts of presigned download URLs: where `kiln serve` says it is reachable, the
 * --public-url setting, and the answer to a presigned fs-store request (status, S3's headers,
 * refusals). The HTTP routes against real processes: test/integration/presign.test.ts.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { defaultPublicUrl } from "../../src/cli/commands/serve.js";
import { COMMAND_SETTINGS, parsePublicUrl, resolveSettings } from "../../src/config/settings.js";
import { KilnError } from "../../src/errors.js";
import { answerSignedObject } from "../../src/store/fs-presign.js";
import { FsStore } from "../../src/store/fs-store.js";
import { ADMIN, READER, startTestService, type TestService } from "../helpers/service.js";

test("the default public URL is the listen address with the port the service got; a wildcard host becomes the host name", () => {
  assert.equal(defaultPublicUrl({ host: "127.0.0.1", port: 0 }, 41234, false), "http://127.0.0.1:41234");
  assert.equal(defaultPublicUrl({ host: "0.0.0.0", port: 8443 }, 8443, true, "kiln1"), "https://kiln1:8443");
  assert.equal(defaultPublicUrl({ host: "::", port: 8080 }, 8080, false, "kiln1"), "http://kiln1:8080");
  assert.equal(defaultPublicUrl({ host: "::1", port: 8080 }, 8080, false), "http://[::1]:8080");
  assert.equal(defaultPublicUrl({ host: "kiln.example", port: 80 }, 80, false), "http://kiln.example:80");
});

test("--public-url / KILN_PUBLIC_URL: an http(s) base URL, trailing slashes dropped; empty by default", () => {
  assert.equal(resolveSettings(COMMAND_SETTINGS.serve, {}, {}).publicUrl, undefined);
  assert.equal(resolveSettings(["publicUrl"], {}, { KILN_PUBLIC_URL: "https://gw.example/apis/ims/" }).publicUrl, "https://gw.example/apis/ims");
  assert.equal(resolveSettings(["publicUrl"], { publicUrl: "http://kiln:8080" }, { KILN_PUBLIC_URL: "http://other" }).publicUrl, "http://kiln:8080");
  assert.equal(parsePublicUrl("HTTP://Kiln.Example:8080/"), "http://kiln.example:8080");
  for (const bad of ["kiln.example:8080", "ftp://kiln", "http://u:p@kiln", "http://kiln/?x=1", "not a url"]) assert.throws(() => parsePublicUrl(bad), Error, bad);
  assert.throws(
    () => resolveSettings(["publicUrl"], {}, { KILN_PUBLIC_URL: "kiln:8080" }),
    (e: unknown) => e instanceof KilnError && e.code === "SERVICE_CONFIG" && /--public-url "kiln:8080" \(env KILN_PUBLIC_URL\): use an http\(s\) URL/.test(e.message),
  );
});

let dir: string;
let store: FsStore;
before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "kiln-presign-"));
  store = await FsStore.open({ root: dir, publicUrl: "http://kiln.test:8080/objects" });
  await store.ensureBucket("boot-images");
  await store.put("boot-images", "img/rootfs", "0123456789abcdef", { contentType: "application/vnd.cray.image.rootfs.squashfs", metadata: { md5sum: "4032af8d61035123906e58e067140cc5" } });
});
after(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

/** The part of a presigned URL below publicUrl, as the route hands it over. */
async function targetOf(key: string, seconds = 60): Promise<string> {
  return (await store.presignGet("boot-images", key, seconds)).slice("http://kiln.test:8080/objects/".length);
}

test("a presigned request's answer: S3's headers, a range, HEAD without a body", async () => {
  const target = await targetOf("img/rootfs");
  const whole = await answerSignedObject(store, target, "GET", undefined);
  assert.ok(whole.ok);
  assert.equal(whole.status, 200);
  assert.equal(whole.headers["content-length"], "16");
  assert.equal(whole.headers["content-type"], "application/vnd.cray.image.rootfs.squashfs");
  assert.equal(whole.headers["accept-ranges"], "bytes");
  assert.equal(whole.headers["x-amz-meta-md5sum"], "4032af8d61035123906e58e067140cc5");
  assert.equal(Buffer.concat(await (await whole.body!()).toArray()).toString(), "0123456789abcdef");

  const part = await answerSignedObject(store, target, "GET", "bytes=4-7");
  assert.ok(part.ok);
  assert.equal(part.status, 206);
  assert.equal(part.headers["content-range"], "bytes 4-7/16");
  assert.equal(part.headers["content-length"], "4");
  assert.equal(Buffer.concat(await (await part.body!()).toArray()).toString(), "4567");

  const head = await answerSignedObject(store, target, "HEAD", undefined);
  assert.ok(head.ok);
  assert.equal(head.body, undefined);
  assert.equal(head.headers["content-length"], "16");
});

test("refusals: 403 changed or expired, 404 missing, 405 not GET/HEAD, 416 past the end", async () => {
  const target = await targetOf("img/rootfs");
  const status = async (t: string, method = "GET", range?: string, now?: number) => {
    const a = await answerSignedObject(store, t, method, range, now);
    return a.ok ? a.status : `${a.status} ${a.reason}`;
  };
  assert.equal(await status(target.replace(/signature=([0-9a-f])/, (_m, c: string) => `signature=${c === "0" ? "1" : "0"}`)), "403 signature does not match");
  assert.equal(await status(target.replace("img/rootfs", "img/other")), "403 signature does not match");
  assert.equal(await status(target.replace(/expires=(\d+)/, (_m, e: string) => `expires=${Number(e) + 1}`)), "403 signature does not match");
  assert.equal(await status(target, "GET", undefined, Date.now() + 120_000), "403 URL expired");
  assert.equal(await status("boot-images/img/rootfs"), "403 not a presigned object URL");
  assert.equal(await status(await targetOf("img/missing")), "404 no such object");
  assert.equal(await status(target, "PUT"), "405 only GET and HEAD");
  assert.equal(await status(target, "GET", "bytes=16-"), "416 range bytes=16- is outside the object's 16 bytes");
  const past = await answerSignedObject(store, target, "GET", "bytes=99-");
  assert.equal(past.headers["content-range"], "bytes */16");
});

test("the routes: /objects/ needs no token and answers RFC 7807; /v3/images/{id}/urls is in the OpenAPI document", async () => {
  const s: TestService = await startTestService();
  try {
    (s.store as FsStore).setDefaultPublicUrl("http://kiln.test:8080");
    await s.store.put("boot-images", "x/rootfs", "squash");
    const url = new URL(await s.store.presignGet("boot-images", "x/rootfs", 60));
    assert.equal(url.origin + url.pathname, "http://kiln.test:8080/boot-images/x/rootfs", "setDefaultPublicUrl is the base of the store's URLs");
    const ok = await s.call("GET", `/objects${url.pathname}${url.search}`, undefined, null);
    assert.equal(ok.statusCode, 200);
    assert.equal(ok.body, "squash");
    const apis = await s.call("GET", `/apis/ims/objects${url.pathname}${url.search}`, undefined, null);
    assert.equal(apis.body, "squash");
    const bad = await s.call("GET", `/objects${url.pathname}?expires=1&signature=00`, undefined, null);
    assert.equal(bad.statusCode, 403);
    assert.equal(bad.headers["content-type"], "application/problem+json; charset=utf-8");
    assert.equal((JSON.parse(bad.body) as { code: string }).code, "FORBIDDEN");
    const range = await s.call("GET", `/objects${url.pathname}${url.search}`, undefined, null);
    assert.equal(range.headers["accept-ranges"], "bytes");

    const doc = JSON.parse((await s.call("GET", "/openapi.json", undefined, READER)).body) as { paths: Record<string, Record<string, { security?: unknown[]; tags?: string[] }>> };
    assert.deepEqual(doc.paths["/objects/{bucket}/{key}"]?.get?.security, [], "no token");
    assert.deepEqual(doc.paths["/v3/images/{id}/urls"]?.get?.tags, ["kiln"]);
    assert.equal((await s.call("GET", "/v3/images/nope/urls", undefined, READER)).statusCode, 404);
    assert.equal((await s.call("GET", "/v3/images/nope/urls", undefined, ADMIN)).statusCode, 404);
  } finally {
    await s.close();
  }
});
