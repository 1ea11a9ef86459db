import { test } from "node:test";
import assert from "node:assert/strict";
import { PatientRetryStrategy } from "../../src/store/s3-retry.js";

function clock() {
  const c = { t: 1_000_000, now: () => c.t };
  return c;
}
const refused = Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:7480"), { code: "ECONNREFUSED" });

test("a request that keeps failing with a connection error is retried with growing delays until the budget is spent", async () => {
  const c = clock();
  const s = new PatientRetryStrategy({ budgetSeconds: 10, firstDelayMs: 250, maxDelayMs: 2_000, now: c.now });
  let token = await s.acquireInitialRetryToken();
  const delays: number[] = [];
  for (;;) {
    try {
      token = await s.refreshRetryTokenForRetry(token, { error: refused, errorType: "TRANSIENT" });
    } catch (e) {
      assert.equal(e, refused, "the request's own error is what the SDK throws");
      break;
    }
    delays.push(token.getRetryDelay());
    c.t += token.getRetryDelay() + 50; // the attempt itself takes a little time
  }
  assert.deepEqual(delays.slice(0, 5), [250, 500, 1000, 2000, 2000], "doubling, capped");
  const spent = delays.reduce((a, b) => a + b, 0);
  assert.ok(spent <= 10_000 && spent > 7_000, `retried for most of the budget (${spent} ms)`);
});

test("server errors and throttling are retried; client errors (403, 404) never", async () => {
  const s = new PatientRetryStrategy({ budgetSeconds: 60 });
  for (const errorType of ["SERVER_ERROR", "THROTTLING", "TRANSIENT"] as const) {
    const t = await s.refreshRetryTokenForRetry(await s.acquireInitialRetryToken(), { error: new Error(errorType), errorType });
    assert.equal(t.getRetryCount(), 1, errorType);
  }
  const denied = new Error("AccessDenied");
  await assert.rejects(s.refreshRetryTokenForRetry(await s.acquireInitialRetryToken(), { error: denied, errorType: "CLIENT_ERROR" }), (e) => e === denied);
});
