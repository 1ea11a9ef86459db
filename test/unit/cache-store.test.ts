import { test } from "node:test";
import assert from "node:assert/strict";
import { access, mkdtemp, readdir, rm, utimes, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { computeKey, explainMiss, type KeyRecord, type StoredKeyRecord } from "../../src/cache/key.js";
import { CacheStore, type Entry, type Section } from "../../src/cache/store.js";
import { cachedStages } from "../../src/engine/build.js";
import type { PlannedStage } from "../../src/plan/plan.js";

const log = { line: () => {} };

async function withStore(fn: (store: CacheStore, root: string) => Promise<void>): Promise<void> {
  const root = await mkdtemp(path.join(os.tmpdir(), "kiln-cache-"));
  try {
    await fn(new CacheStore(root), root);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

function record(kind: string, parent: string | null, extra: Partial<KeyRecord> = {}): KeyRecord {
  return { kind, parent, options: {}, inputs: {}, tools: {}, ...extra };
}

/** Commits an entry the way a build does: built in a work dir, holding one file of `bytes` bytes. */
async function put(store: CacheStore, root: string, section: Section, r: KeyRecord, parent: Entry | null, bytes = 1000, opts: { replace?: boolean; content?: string } = {}): Promise<Entry> {
  const key = computeKey(r);
  const pending = await store.begin(section, key, path.join(root, "work"));
  await writeFile(path.join(section === "layers" ? pending.tree : pending.outputs, "data"), opts.content ?? "x".repeat(bytes));
  const stored: StoredKeyRecord = { ...r, parentGeneration: parent ? parent.meta.generation : null };
  return store.commit(pending, stored, { name: r.kind, kind: r.kind, seconds: 1, facts: {} }, log, { replace: opts.replace });
}

async function age(entry: Entry, daysAgo: number): Promise<void> {
  const t = new Date(Date.now() - daysAgo * 86400_000);
  await utimes(path.join(entry.dir, "meta.json"), t, t);
}

const exists = (p: string) => access(p).then(() => true, () => false);

test("prune removes least recently used entries until the cache fits, and resolve() marks use", async () => {
  await withStore(async (store, root) => {
    const a = await put(store, root, "layers", record("bootstrap", null, { options: { n: 1 } }), null, 5000);
    const b = await put(store, root, "layers", record("bootstrap", null, { options: { n: 2 } }), null, 3000);
    const c = await put(store, root, "artifacts", record("squashfs", null, { options: { n: 3 } }), null, 2000);
    await age(a, 10);
    await age(b, 5);
    await age(c, 1);
    await store.resolve("layers", a.key); // used just now: now the most recent
    const removed = await store.prune(a.meta.size + 10, log);
    assert.deepEqual(removed.map((e) => e.key), [b.key, c.key]);
    assert.deepEqual((await store.list()).map((e) => e.key), [a.key]);
    assert.deepEqual((await store.prune(0, log)).map((e) => e.key), [a.key]);
    assert.deepEqual(await store.list(), []);
  });
});

test("prune removes a layer's descendants with it, even when they were used more recently", async () => {
  await withStore(async (store, root) => {
    const bootstrap = await put(store, root, "layers", record("bootstrap", null), null, 4000);
    const packages = await put(store, root, "layers", record("packages", bootstrap.key), bootstrap, 1000);
    const squashfs = await put(store, root, "artifacts", record("squashfs", packages.key), packages, 1000);
    const iso = await put(store, root, "artifacts", record("iso", null, { inputs: { squashfs: `stage:${squashfs.key}/squashfs` } }), null, 1000);
    const other = await put(store, root, "layers", record("bootstrap", null, { options: { other: true } }), null, 1000);
    await age(bootstrap, 10); // the oldest: the one LRU removes first
    for (const e of [packages, squashfs, iso, other]) await age(e, 1);
    const total = (await store.list()).reduce((n, e) => n + e.meta.size, 0);
    // Removing the bootstrap alone would be enough; its children go with it all the same.
    const removed = await store.prune(total - bootstrap.meta.size, log);
    assert.deepEqual(new Set(removed.map((e) => e.key)), new Set([bootstrap.key, packages.key, squashfs.key, iso.key]));
    assert.deepEqual((await store.list()).map((e) => e.key), [other.key]);
    for (const e of [bootstrap, packages, squashfs, iso]) assert.equal(await exists(e.dir), false, `${e.meta.name} dir removed`);
  });
});

test("a rebuilt parent gets a new generation: its old child is no longer valid on it", async () => {
  await withStore(async (store, root) => {
    const r = record("bootstrap", null);
    const first = await put(store, root, "layers", r, null, 10, { content: "old archive" });
    const child = await put(store, root, "layers", record("packages", first.key), first);
    assert.equal(child.record.parentGeneration, first.meta.generation);
    const plan = [
      { name: "bootstrap", kind: "bootstrap", section: "layers", options: {}, record: r, key: first.key },
      { name: "packages", kind: "packages", section: "layers", options: {}, record: record("packages", first.key), key: child.key },
    ] as PlannedStage[];
    assert.deepEqual(await cachedStages(store, plan), new Set([first.key, child.key]));

    // Same key, newer content (a prune and a rebuild, or --from bootstrap).
    const second = await put(store, root, "layers", r, null, 10, { replace: true, content: "new archive" });
    assert.equal(second.key, first.key);
    assert.notEqual(second.meta.generation, first.meta.generation);
    assert.deepEqual(await cachedStages(store, plan), new Set([first.key]), "packages is not reusable on the rebuilt bootstrap");
    const stale = (await store.resolve("layers", child.key))!;
    assert.deepEqual(explainMiss(stale.record, { ...plan[1]!.record, parentGeneration: second.meta.generation }), ["parent rebuilt"]);
  });
});

test("a replaced generation stays on disk for the build that uses it, until prune", async () => {
  await withStore(async (store, root) => {
    const r = record("bootstrap", null);
    const first = await put(store, root, "layers", r, null, 10, { content: "old" });
    const second = await put(store, root, "layers", r, null, 10, { replace: true, content: "new" });
    assert.notEqual(second.dir, first.dir);
    assert.equal(await exists(path.join(first.tree, "data")), true, "the old generation is still readable");
    assert.equal((await store.resolve("layers", first.key))!.dir, second.dir);
    await store.prune(Number.MAX_SAFE_INTEGER, log); // nothing to evict, but garbage goes
    assert.equal(await exists(first.dir), false);
    assert.equal(await exists(path.join(second.tree, "data")), true);
    assert.deepEqual((await readdir(path.join(root, "layers", ".gen"))).length, 1);
  });
});

test("a commit of an entry another build already made on the same parent keeps theirs", async () => {
  await withStore(async (store, root) => {
    const parent = await put(store, root, "layers", record("bootstrap", null), null);
    const theirs = await put(store, root, "layers", record("packages", parent.key), parent);
    const ours = await put(store, root, "layers", record("packages", parent.key), parent);
    assert.equal(ours.dir, theirs.dir);
    assert.equal(ours.meta.generation, theirs.meta.generation);
  });
});

test("an entry of the layout before generations (a plain dir) is not reused, and is replaced", async () => {
  await withStore(async (store, root) => {
    const r = record("bootstrap", null);
    const key = computeKey(r);
    const legacy = path.join(root, "layers", key);
    await (await import("node:fs/promises")).mkdir(path.join(legacy, "tree"), { recursive: true });
    await writeFile(path.join(legacy, "meta.json"), JSON.stringify({ name: "bootstrap", kind: "bootstrap", created: "", seconds: 1, size: 1, facts: {} }));
    await writeFile(path.join(legacy, "key.json"), JSON.stringify(r));
    assert.equal(await store.resolve("layers", key), undefined);
    const e = await put(store, root, "layers", r, null);
    assert.equal((await store.resolve("layers", key))!.dir, e.dir);
  });
});
