/**
 * A job log read back from a real catalog (PGlite) comes in the order it was written, once, past
 * sequence numbers whose text sorts otherwise ("10" before "9"): the query orders by the bigint
 * column, not by its text alias.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { randomUUID } from "node:crypto";
import { Catalog } from "../../src/catalog/catalog.js";

test("a log of 120 chunks reads back whole and in order, in one call and in pages", async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), "kiln-log-order-"));
  const catalog = await Catalog.open(undefined, dir);
  try {
    const id = randomUUID();
    for (let i = 0; i < 120; i++) await catalog.appendLog(id, `line ${i}\n`);
    const expected = Array.from({ length: 120 }, (_, i) => `line ${i}\n`).join("");
    assert.equal((await catalog.readLog(id, 0)).map((c) => c.text).join(""), expected, "one call");
    let after = 0;
    let paged = "";
    for (;;) {
      const chunks = await catalog.readLog(id, after, 7);
      if (chunks.length === 0) break;
      after = chunks.at(-1)!.seq;
      paged += chunks.map((c) => c.text).join("");
    }
    assert.equal(paged, expected, "paged as GET /v3/jobs/{id}/log follows it");
  } finally {
    await catalog.close();
    await rm(dir, { recursive: true, force: true });
  }
});
