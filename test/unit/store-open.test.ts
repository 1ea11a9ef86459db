import { test } from "node:test";
import assert from "node:assert/strict";
import { isKilnError } from "../../src/errors.js";
import { resolveStore, type StoreSettings } from "../../src/store/open-store.js";

const KEYS = { KILN_S3_ACCESS_KEY: "AK", KILN_S3_SECRET_KEY: "SK" };

test("file:// URLs and absolute paths open the fs store", () => {
  assert.deepEqual(resolveStore("file:///var/lib/kiln/objects", { env: {} }), {
    kind: "fs",
    options: { root: "/var/lib/kiln/objects", publicUrl: undefined, signingKey: undefined },
  });
  const bare = resolveStore("/srv/kiln/objects/", { env: { KILN_STORE_PUBLIC_URL: "http://kiln:8080/objects" } });
  assert.deepEqual(bare, { kind: "fs", options: { root: "/srv/kiln/objects", publicUrl: "http://kiln:8080/objects", signingKey: undefined } });
});

test("s3:// URLs: endpoint, TLS, region, credentials from env or settings", () => {
  const local = resolveStore("s3://127.0.0.1:7480?tls=false", { env: KEYS });
  assert.equal(local.kind, "s3");
  assert.deepEqual(local.options, {
    endpoint: "http://127.0.0.1:7480",
    url: "s3://127.0.0.1:7480?tls=false",
    region: "us-east-1",
    accessKey: "AK",
    secretKey: "SK",
    partSize: undefined,
    queueSize: undefined,
    retrySeconds: undefined,
  });
  const remote = resolveStore("s3://rgw.example.net?region=site-a", { env: { ...KEYS, KILN_S3_REGION: "ignored" } });
  assert.equal(remote.kind === "s3" && remote.options.endpoint, "https://rgw.example.net");
  assert.equal(remote.kind === "s3" && remote.options.region, "site-a");
  const settings = resolveStore("s3://[::1]:9000?tls=false", { env: KEYS, accessKey: "mine", secretKey: "also mine", region: "r2", partSize: 16 * 1024 * 1024 });
  assert.equal(settings.kind, "s3");
  if (settings.kind === "s3") {
    assert.equal(settings.options.endpoint, "http://[::1]:9000");
    assert.equal(settings.options.accessKey, "mine");
    assert.equal(settings.options.secretKey, "also mine");
    assert.equal(settings.options.region, "r2");
    assert.equal(settings.options.partSize, 16 * 1024 * 1024);
  }
});

test("a misconfigured store says what is wrong and where the setting comes from", () => {
  const cases: [string, StoreSettings, string][] = [
    ["s3://127.0.0.1:7480", { env: {} }, 'store s3: "access key" is required (env KILN_S3_ACCESS_KEY)'],
    ["s3://127.0.0.1:7480", { env: { KILN_S3_ACCESS_KEY: "AK" } }, 'store s3: "secret key" is required (env KILN_S3_SECRET_KEY)'],
    ["s3://AK:SK@127.0.0.1:7480", { env: KEYS }, "store s3: credentials do not belong in the store URL, which is logged: set KILN_S3_ACCESS_KEY and KILN_S3_SECRET_KEY"],
    ["s3://127.0.0.1:7480/boot-images", { env: KEYS }, 'store s3: the URL names a server, not a bucket or folder: drop "/boot-images" (Kiln uses the buckets ims and boot-images)'],
    ["s3://127.0.0.1:7480?bucket=x", { env: KEYS }, 'store s3: unknown URL parameter "bucket" (allowed: region, tls)'],
    ["s3://127.0.0.1:7480?tls=no", { env: KEYS }, 'store s3: "tls" is true or false, got "no"'],
    ["s3://127.0.0.1", { env: KEYS, partSize: 1024 * 1024 }, 'store s3: "partSize" must be at least 5 MiB (S3\'s smallest part), got 1048576'],
    ["s3://127.0.0.1", { env: KEYS, queueSize: 0 }, 'store s3: "queueSize" must be a whole number ≥ 1, got 0'],
    ["file:///srv/objects?x=1", { env: {} }, 'store fs: a file:// URL takes no parameters ("?x=1")'],
    ["/srv/objects", { env: { KILN_STORE_PUBLIC_URL: "kiln:8080" } }, 'store fs: "publicUrl" must be an http(s) URL, got "kiln:8080" (env KILN_STORE_PUBLIC_URL)'],
    ["objects", { env: {} }, 'store: "objects" is not a store URL: use file:///path/to/dir or s3://host[:port]'],
    ["http://127.0.0.1:7480", { env: KEYS }, 'store: "http:" stores are not supported: use file:///path/to/dir or s3://host[:port]'],
  ];
  for (const [url, settings, message] of cases) {
    let err: unknown;
    try {
      resolveStore(url, settings);
    } catch (e) {
      err = e;
    }
    assert.ok(isKilnError(err) && err.code === "STORE_CONFIG" && err.exitCode === 2, `${url}: ${String(err)}`);
    assert.equal(err.message, message);
  }
});
