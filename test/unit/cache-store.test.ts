import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, utimes, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { CacheStore } from "../../src/cache/store.js";

async function fakeEntry(root: string, section: "layers" | "artifacts", key: string, name: string, size: number, usedDaysAgo: number) {
  const dir = path.join(root, section, key);
  await mkdir(path.join(dir, "tree"), { recursive: true });
  const meta = path.join(dir, "meta.json");
  await writeFile(meta, JSON.stringify({ name, kind: name, created: new Date().toISOString(), seconds: 1, size, facts: {} }));
  const t = new Date(Date.now() - usedDaysAgo * 86400_000);
  await utimes(meta, t, t);
}

test("prune removes least recently used entries until the cache fits, and get() marks use", async () => {
  const root = await mkdtemp(path.join(os.tmpdir(), "kiln-cache-"));
  try {
    const store = new CacheStore(root);
    await fakeEntry(root, "layers", "aaa", "bootstrap", 500, 10);
    await fakeEntry(root, "layers", "bbb", "packages", 300, 5);
    await fakeEntry(root, "artifacts", "ccc", "squashfs", 200, 1);
    await store.get("layers", "aaa"); // used just now: now the most recent
    const removed = await store.prune(600, { line: () => {} });
    assert.deepEqual(removed.map((e) => e.key), ["bbb", "ccc"]);
    const left = (await store.list()).map((e) => e.key).sort();
    assert.deepEqual(left, ["aaa"]);
    assert.deepEqual(await store.prune(0, { line: () => {} }).then((r) => r.map((e) => e.key)), ["aaa"]);
    assert.deepEqual(await store.list(), []);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
