/**
 * Collections are sent from their cached bytes, gzip-compressed for clients that ask (cray's
 * requests does): the same records either way, and a change is in the next response.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { gunzipSync } from "node:zlib";
import { acceptsGzip } from "../../src/api/routes/common.js";
import { imsTime } from "../../src/catalog/records.js";
import { ADMIN, startTestService, type TestService } from "../helpers/service.js";

let s: TestService;
before(async () => {
  s = await startTestService();
  for (let i = 0; i < 400; i++) {
    await s.catalog.insert("images", { id: randomUUID(), created: imsTime(), name: `image-${i}`, link: null, arch: "x86_64", metadata: { release: "bookworm" } });
  }
});
after(async () => {
  await s.close();
});

const get = (encoding?: string) => s.app.inject({ method: "GET", url: "/v3/images", headers: { authorization: `Bearer ${ADMIN}`, ...(encoding !== undefined ? { "accept-encoding": encoding } : {}) } });

test("a large list goes out gzip-compressed when the client takes gzip, as the same JSON", async () => {
  const plain = await get();
  assert.equal(plain.statusCode, 200);
  assert.equal(plain.headers["content-encoding"], undefined);
  assert.equal(plain.headers["vary"], "accept-encoding");
  assert.equal(JSON.parse(plain.body).length, 400);
  assert.ok(plain.rawPayload.length > 64 * 1024);

  const zipped = await get("gzip, deflate");
  assert.equal(zipped.headers["content-encoding"], "gzip");
  assert.equal(zipped.headers["content-type"], "application/json; charset=utf-8");
  assert.ok(zipped.rawPayload.length < plain.rawPayload.length / 4, `${zipped.rawPayload.length} bytes compressed`);
  assert.equal(gunzipSync(zipped.rawPayload).toString(), plain.body);
  assert.equal((await get("gzip;q=0, identity")).headers["content-encoding"], undefined);
});

test("after a change the next list has it, in both encodings", async () => {
  const before = JSON.parse((await get()).body) as Array<{ id: string; name: string }>;
  await get("gzip"); // cached compressed form of the old list
  const id = before[7]!.id;
  assert.equal((await s.call("PATCH", `/v3/images/${id}`, { metadata: { operation: "set", key: "tier", value: "gold" } })).statusCode, 200);
  const plain = JSON.parse((await get()).body) as Array<{ id: string; metadata: Record<string, string> }>;
  const zipped = JSON.parse(gunzipSync((await get("gzip")).rawPayload).toString()) as typeof plain;
  for (const list of [plain, zipped]) assert.equal(list.find((x) => x.id === id)!.metadata.tier, "gold");
  assert.equal((await s.call("DELETE", `/v3/images/${id}`)).statusCode, 204);
  const zippedAfter = JSON.parse(gunzipSync((await get("gzip")).rawPayload).toString()) as typeof plain;
  assert.equal(zippedAfter.length, 399);
});

test("Accept-Encoding is read as RFC 9110 says", () => {
  for (const [h, want] of [
    [undefined, false],
    ["", false],
    ["gzip", true],
    ["deflate, gzip;q=0.5", true],
    ["GZIP", true],
    ["gzip;q=0", false],
    ["gzip; q=0.0, identity", false],
    ["*", true],
    ["br, identity", false],
    [["identity", "gzip"], true],
  ] as const) {
    assert.equal(acceptsGzip(h as string | string[] | undefined), want, JSON.stringify(h));
  }
});
