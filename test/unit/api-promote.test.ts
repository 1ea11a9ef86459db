/**
 * POST /v3/images/{id}/promote through inject(): an image a Kiln job made moves from `candidate`
 * to `stable`; unknown labels, images no Kiln job made and unknown ids are refused with the reason;
 * read-only tokens may not promote.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { READER, startTestService, type TestService } from "../helpers/service.js";
import { imsTime, type ImageRecord } from "../../src/catalog/records.js";

let s: TestService;
const made = randomUUID();
const plain = randomUUID();
before(async () => {
  s = await startTestService();
  const base = { created: imsTime(new Date()), name: "web", link: null, arch: "x86_64", metadata: {} } as const;
  await s.catalog.insert("images", { ...base, id: made, kiln: { job_id: randomUUID(), source_image_id: null, flavors: [{ flavor: "amd64", kpackage: "linux-image-amd64", kernel_version: "6.1.0-1-amd64" }], package_diff: null, label: "candidate" } } as ImageRecord);
  await s.catalog.insert("images", { ...base, id: plain } as ImageRecord);
});
after(async () => {
  await s.close();
});

test("promote moves a Kiln image from candidate to stable, and the record says so", async () => {
  const r = await s.call("POST", `/v3/images/${made}/promote`, { to: "stable" });
  assert.equal(r.statusCode, 200, r.body);
  assert.equal((JSON.parse(r.body) as ImageRecord).kiln?.label, "stable");
  assert.equal((await s.catalog.get("images", made))?.kiln?.label, "stable");
});

test("promote refuses an unknown label (422 naming `to`), an image no Kiln job made (409), an unknown id (404), a read-only token (403)", async () => {
  const bad = await s.call("POST", `/v3/images/${made}/promote`, { to: "daily" });
  assert.equal(bad.statusCode, 422);
  assert.deepEqual((JSON.parse(bad.body) as { errors: Array<{ path: string }> }).errors.map((e) => e.path), ["to"]);
  const notKiln = await s.call("POST", `/v3/images/${plain}/promote`, { to: "stable" });
  assert.equal(notKiln.statusCode, 409);
  assert.match(notKiln.body, /not made by a Kiln job/);
  assert.equal((await s.call("POST", `/v3/images/${randomUUID()}/promote`, { to: "stable" })).statusCode, 404);
  const ro = await s.call("POST", `/v3/images/${made}/promote`, { to: "candidate" }, READER);
  assert.equal(ro.statusCode, 403);
  assert.equal((await s.catalog.get("images", made))?.kiln?.label, "stable", "unchanged");
});
