import { test } from "node:test";
import assert from "node:assert/strict";
import { Scope } from "../../src/host/scope.js";

test("a scope releases in reverse order, even when the block throws", async () => {
  const order: string[] = [];
  await assert.rejects(async () => {
    await using scope = new Scope();
    scope.defer(() => void order.push("first"));
    scope.use({ release: async () => void order.push("second") });
    throw new Error("boom");
  }, /boom/);
  assert.deepEqual(order, ["second", "first"]);
});

test("every resource is released even if one release fails; the first error is rethrown", async () => {
  const order: string[] = [];
  const scope = new Scope();
  scope.defer(() => void order.push("a"));
  scope.defer(() => {
    throw new Error("umount failed");
  });
  scope.defer(() => void order.push("c"));
  await assert.rejects(scope.release(), /umount failed/);
  assert.deepEqual(order, ["c", "a"]);
  await scope.release(); // idempotent
});
