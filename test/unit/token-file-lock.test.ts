/**
 * `kiln token create` reads, changes and writes <data-dir>/tokens.json: ten of them at once, as
 * separate processes, must all keep their token (without the file lock, later writers dropped
 * earlier tokens).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { FileTokenVerifier, listTokens, tokensFile } from "../../src/api/tokens.js";
import { runKiln } from "../helpers/kiln.js";

test("10 concurrent kiln token create processes: every token is in tokens.json afterwards and works", async () => {
  const dataDir = await mkdtemp(path.join(tmpdir(), "kiln-tokens-"));
  try {
    const runs = await Promise.all(Array.from({ length: 10 }, (_, i) => runKiln(["token", "create", "--role", i % 2 ? "admin" : "read-only", "--name", `op${i}`, "--json", "--data-dir", dataDir])));
    for (const r of runs) assert.equal(r.code, 0, r.stderr);
    const made = runs.map((r) => JSON.parse(r.stdout.trim().split("\n").pop()!) as { id: string; token: string; name: string });
    const kept = await listTokens(dataDir);
    assert.deepEqual(kept.map((t) => t.id).sort(), made.map((t) => t.id).sort(), "no token was lost");
    const verifier = new FileTokenVerifier(tokensFile(dataDir));
    for (const [i, t] of made.entries()) assert.equal(await verifier.roleOf(t.token), Number(t.name.slice(2)) % 2 ? "admin" : "read-only", `token ${i}`);
  } finally {
    await rm(dataDir, { recursive: true, force: true });
  }
});
