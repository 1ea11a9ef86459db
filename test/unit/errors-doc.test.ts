import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { ERROR_CODES } from "../../src/errors.js";

test("docs/errors.md lists exactly the error codes, with their exit and HTTP status", async () => {
  const doc = await readFile(new URL("../../../docs/errors.md", import.meta.url), "utf8");
  const rows = [...doc.matchAll(/^\| `([A-Z_]+)` \| (\d+) \| (\d+) \|/gm)].map((m) => [m[1], Number(m[2]), Number(m[3])]);
  const codes = Object.entries(ERROR_CODES).map(([code, spec]) => [code, spec.exit, spec.status]);
  assert.deepEqual(rows.sort(), codes.sort());
});
