import { test } from "node:test";
import assert from "node:assert/strict";
import { cachePruneCommand } from "../../src/cli/commands/cache.js";
import { KilnError } from "../../src/errors.js";
import { parseSize } from "../../src/size.js";

const KiB = 2 ** 10;
const MiB = 2 ** 20;
const GiB = 2 ** 30;
const TiB = 2 ** 40;

test("one parseSize takes every form a caller took before: byte counts, K/M/G/T with optional i and B in any case, fractions", () => {
  // The settings' and `cache prune --max-size`'s forms.
  assert.equal(parseSize("0"), 0);
  assert.equal(parseSize("512"), 512);
  assert.equal(parseSize("1048576"), MiB);
  assert.equal(parseSize("512K"), 512 * KiB);
  assert.equal(parseSize("64M"), 64 * MiB);
  assert.equal(parseSize("1GiB"), GiB);
  assert.equal(parseSize("1gb"), GiB);
  assert.equal(parseSize("20g"), 20 * GiB);
  assert.equal(parseSize("2TB"), 2 * TiB);
  assert.equal(parseSize("1.5G"), 1.5 * GiB);
  assert.equal(parseSize("0.3K"), 307, "fractions round down to whole bytes");
  assert.equal(parseSize(" 10 M "), 10 * MiB);
  assert.equal(parseSize("7B"), 7);
  // The recipe's disk sizes: whole M, G or T in binary units.
  assert.equal(parseSize("8G"), 8 * 1024 * MiB);
  assert.equal(parseSize("300M"), 300 * MiB);
  assert.equal(parseSize("1T"), TiB);
});

test("parseSize refuses what is not a size: words, negative numbers, unknown units, empty text", () => {
  for (const t of ["lots", "-1G", "1P", "1 G B", "", "G", "1e3", "1,5G", "0x10"]) assert.equal(parseSize(t), undefined, t);
});

test("kiln cache prune --max-size with a bad size is a usage error naming the flag (exit 2)", async () => {
  const io = { stdout: { write: () => true }, stderr: { write: () => true } } as unknown as Parameters<typeof cachePruneCommand>[1];
  const err = await cachePruneCommand({ cacheDir: "/nonexistent/kiln-cache", maxSize: "lots", json: false }, io).then(
    () => assert.fail("accepted --max-size lots"),
    (e: unknown) => e,
  );
  assert.ok(err instanceof KilnError);
  assert.equal(err.code, "USAGE");
  assert.equal(err.exitCode, 2);
  assert.equal(err.message, "--max-size lots: not a size; use e.g. 500M, 20G or 0");
});
