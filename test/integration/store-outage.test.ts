/**
 * The S3 store rides out an outage of its server: a real Ceph RGW stopped in the middle of a
 * multipart upload and started again a few seconds later; the upload finishes and the stored
 * object is the whole body. With a retry time shorter than the outage the request fails with
 * STORE_UNAVAILABLE (which a worker answers by queueing the job again, see jobs-worker tests).
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import { isKilnError } from "../../src/errors.js";
import { openStore } from "../../src/store/open-store.js";
import type { ObjectStore } from "../../src/store/object-store.js";
import { s3Server, type TestServer } from "../helpers/servers.js";

const MiB = 1024 * 1024;
let s3: TestServer | undefined;
const stores: ObjectStore[] = [];
after(async () => {
  for (const s of stores) await s.close().catch(() => {});
  await s3?.stop();
});

async function open(retrySeconds: number): Promise<ObjectStore> {
  const store = await openStore(s3!.env.KILN_S3_URL!, {
    accessKey: s3!.env.KILN_S3_ACCESS_KEY,
    secretKey: s3!.env.KILN_S3_SECRET_KEY,
    partSize: 5 * MiB,
    queueSize: 1,
    retrySeconds,
  });
  stores.push(store);
  return store;
}

async function md5Of(stream: Readable): Promise<string> {
  const h = createHash("md5");
  for await (const chunk of stream) h.update(chunk as Buffer);
  return h.digest("hex");
}

test("a multipart upload survives a restart of the S3 server in its middle", async () => {
  s3 = await s3Server({ own: true });
  const store = await open(90);
  await store.ensureBucket("outage");
  const parts = 6;
  const chunk = (i: number) => Buffer.alloc(5 * MiB, i + 1);
  const expected = createHash("md5");
  for (let i = 0; i < parts; i++) expected.update(chunk(i));
  let restarted: Promise<void> | undefined;
  const t0 = Date.now();
  let outageSeconds = 0;
  const body = Readable.from(
    (async function* () {
      for (let i = 0; i < parts; i++) {
        if (i === 2) {
          // Parts 1 and 2 are on their way or stored: take the server away, bring it back later.
          await s3!.pause();
          const down = Date.now();
          restarted = new Promise((r) => setTimeout(r, 2_000)).then(() => s3!.start()).then(() => void (outageSeconds = (Date.now() - down) / 1000));
        }
        yield chunk(i);
      }
    })(),
  );
  const info = await store.put("outage", "big", body, { size: parts * 5 * MiB });
  await restarted;
  assert.ok(outageSeconds >= 2, `the server really was down (${outageSeconds} s)`);
  assert.equal(info.size, parts * 5 * MiB);
  assert.equal(await md5Of(await store.get("outage", "big")), expected.digest("hex"), "the stored object is the whole body");
  console.log(`# upload of ${parts * 5} MiB with a ${outageSeconds.toFixed(1)} s server outage took ${((Date.now() - t0) / 1000).toFixed(1)} s`);
});

test("past its retry time a request fails STORE_UNAVAILABLE, naming the store and the attempts", async () => {
  const store = await open(2);
  await s3!.pause();
  try {
    const t0 = Date.now();
    await assert.rejects(store.put("outage", "small", Buffer.from("x")), (e) => {
      assert.ok(isKilnError(e), String(e));
      assert.equal(e.code, "STORE_UNAVAILABLE");
      assert.match(e.message, /^store s3: put outage\/small: cannot reach http:\/\/[^ ]+ \(ECONNREFUSED\) after \d+ attempts in 2 s$/);
      return true;
    });
    const took = (Date.now() - t0) / 1000;
    assert.ok(took >= 1 && took < 10, `retried for about its retry time (${took} s)`);
  } finally {
    await s3!.start();
  }
});
