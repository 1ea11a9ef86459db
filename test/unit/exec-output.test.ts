import { test } from "node:test";
import assert from "node:assert/strict";
import { PassThrough } from "node:stream";
import { once } from "node:events";
import { exec, pipeLines } from "../../src/host/exec.js";

test("a multi-byte character cut between two chunks of output reaches the log whole", async () => {
  const stream = new PassThrough();
  const lines: string[] = [];
  pipeLines(stream, (l) => lines.push(l));
  const bytes = Buffer.from("café ✓ 🔥\nnext", "utf8");
  // Cut inside "é" (2 bytes), inside "✓" (3 bytes) and inside "🔥" (4 bytes).
  const cuts = [4, bytes.indexOf(Buffer.from("✓")) + 1, bytes.indexOf(Buffer.from("🔥")) + 2, bytes.length];
  let at = 0;
  for (const cut of cuts) {
    stream.write(bytes.subarray(at, cut));
    await new Promise((r) => setImmediate(r)); // each write a separate "data" event
    at = cut;
  }
  stream.end();
  await once(stream, "end");
  assert.deepEqual(lines, ["café ✓ 🔥", "next"]);
  assert.ok(!lines.join("").includes("\uFFFD"), "no replacement characters");
});

test("a real child writing one UTF-8 character in two writes with a pause: the log line is intact", async () => {
  const lines: string[] = [];
  // printf's octal escapes are bytes: \303 then \251 is "é"; the sleep makes them two reads of the pipe.
  const r = await exec(["sh", "-c", "printf 'caf\\303'; sleep 0.3; printf '\\251\\n'"], { log: { line: (t) => lines.push(t) }, captureStdout: true });
  assert.equal(r.stdout, "café\n");
  assert.deepEqual(lines.slice(1), ["café"], "the line after the echoed argv");
});
