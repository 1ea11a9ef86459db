import { test } from "node:test";
import assert from "node:assert/strict";
import { canonicalJson, computeKey, explainMiss, type KeyRecord } from "../../src/cache/key.js";

const base: KeyRecord = { kind: "packages", parent: "a41e", options: { install: ["openssh-server"] }, inputs: {}, tools: { chroot: "9.1" } };

test("canonical JSON sorts keys at every level and drops undefined", () => {
  assert.equal(canonicalJson({ b: 1, a: { d: 2, c: undefined, b: [3, { z: 1, y: 2 }] } }), '{"a":{"b":[3,{"y":2,"z":1}],"d":2},"b":1}');
});

test("equal records give equal keys whatever the key order", () => {
  const reordered = { tools: base.tools, inputs: {}, options: base.options, parent: "a41e", kind: "packages" } as KeyRecord;
  assert.equal(computeKey(reordered), computeKey(base));
  assert.match(computeKey(base), /^[0-9a-f]{64}$/);
});

test("any change in kind, parent, options, inputs or tools changes the key", () => {
  const k = computeKey(base);
  assert.notEqual(computeKey({ ...base, parent: "b000" }), k);
  assert.notEqual(computeKey({ ...base, options: { install: ["openssh-server", "curl"] } }), k);
  assert.notEqual(computeKey({ ...base, inputs: { "files[0].source": "sha256:00" } }), k);
  assert.notEqual(computeKey({ ...base, tools: { chroot: "9.2" } }), k);
});

test("explainMiss says what changed, in words", () => {
  const why = explainMiss(base, { ...base, options: { install: ["openssh-server", "curl"] }, parent: "ffff" });
  assert.ok(why.includes('options.install gained "curl"'), why.join("; "));
  assert.ok(why.includes("parent changed"), why.join("; "));
  assert.deepEqual(explainMiss(base, base), []);
});

test("the binding (what an entry was built on) is not part of the key, and a changed one reads as parent rebuilt", () => {
  const r: KeyRecord = { kind: "packages", parent: "p".repeat(64), options: { install: ["curl"] }, inputs: {}, tools: {} };
  assert.equal(computeKey({ ...r, parentGeneration: "g1" } as KeyRecord), computeKey(r));
  assert.deepEqual(explainMiss({ ...r, parentGeneration: "g1" } as KeyRecord, { ...r, parentGeneration: "g2" } as KeyRecord), ["parent rebuilt"]);
  assert.deepEqual(explainMiss({ ...r, parentGeneration: "g1" } as KeyRecord, { ...r, parentGeneration: "g1" } as KeyRecord), []);
  const iso: KeyRecord = { kind: "iso", parent: null, options: {}, inputs: {}, tools: {} };
  assert.deepEqual(
    explainMiss({ ...iso, parentGeneration: null, inputGenerations: { kernel: "k1", squashfs: "s1" } } as KeyRecord, { ...iso, parentGeneration: null, inputGenerations: { kernel: "k2", squashfs: "s1" } } as KeyRecord),
    ["input kernel rebuilt"],
  );
});
