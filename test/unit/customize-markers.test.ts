import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile, symlink } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { watchMarkers } from "../../src/customize/markers.js";

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "kiln-markers-"));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test("complete settles the watch with complete", () =>
  withDir(async (dir) => {
    const w = watchMarkers(dir, { intervalMs: 10 });
    setTimeout(() => void writeFile(path.join(dir, "complete"), ""), 30);
    assert.equal(await w.result, "complete");
  }));

test("failed wins over complete, and a dangling symlink counts (it is not followed)", () =>
  withDir(async (dir) => {
    await writeFile(path.join(dir, "complete"), "");
    await symlink("/nonexistent", path.join(dir, "failed"));
    assert.equal(await watchMarkers(dir, { intervalMs: 10 }).result, "failed");
  }));

test("a stopped watch never settles", () =>
  withDir(async (dir) => {
    const w = watchMarkers(dir, { intervalMs: 10 });
    w.stop();
    await writeFile(path.join(dir, "complete"), "");
    const r = await Promise.race([w.result, new Promise((r) => setTimeout(() => r("pending"), 80))]);
    assert.equal(r, "pending");
  }));
