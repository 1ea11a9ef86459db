/**
 * `kiln … | head`: when the reader of stdout goes away, kiln stops quietly (as shell tools do on
 * SIGPIPE) instead of crashing with an unhandled EPIPE and a stack trace.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";

const MAIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../src/cli/main.js");

test("a reader that closes stdout early (| true) ends kiln with exit 0 and no EPIPE trace", () => {
  // `true` exits without reading, so every write of the help text meets a closed pipe.
  const r = spawnSync("bash", ["-c", `node ${JSON.stringify(MAIN)} streams check --help | true; echo "node exit \${PIPESTATUS[0]}" >&2`], { encoding: "utf8" });
  assert.doesNotMatch(r.stderr, /EPIPE|Unhandled/, r.stderr);
  assert.match(r.stderr, /node exit 0/);
});
