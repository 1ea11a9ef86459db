// Session processes on the host (no namespaces, no root needed): pipes, exit codes, the PTY made
// by util-linux script, window changes, stop().
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSessionProcess, type SessionProcess } from "../../src/host/session-process.js";

const opts = { env: { PATH: "/usr/bin:/bin" }, workDir: "/var/tmp/kiln-test-work", log: { line: () => {} } };

function output(p: SessionProcess): { text: () => string; waitFor: (re: RegExp) => Promise<void> } {
  let text = "";
  const waiters: Array<[RegExp, () => void]> = [];
  p.stdout.on("data", (d: Buffer) => {
    text += d.toString();
    for (const [re, done] of waiters) if (re.test(text)) done();
  });
  return {
    text: () => text,
    waitFor: (re) => (re.test(text) ? Promise.resolve() : new Promise((resolve) => waiters.push([re, resolve]))),
  };
}

test("a command's output, input and exit code; KILN_WORK marks it for the sweep", async () => {
  const p = spawnSessionProcess(["sh", "-c", 'read line; echo "got $line in $KILN_WORK"; exit 3'], opts);
  const out = output(p);
  p.stdin.end("hello\n");
  assert.equal(await p.exited, 3);
  assert.equal(out.text(), "got hello in /var/tmp/kiln-test-work\n");
});

test("stop() ends the whole process group", async () => {
  const p = spawnSessionProcess(["sh", "-c", "sleep 100 & sleep 100 & wait"], opts);
  await new Promise((r) => setTimeout(r, 100));
  await p.stop(500);
  assert.equal(await p.exited, 128 + 15);
});

test("a PTY: the command has a terminal of the requested size, and window changes reach it", async () => {
  const p = spawnSessionProcess(["sh"], { ...opts, pty: { rows: 30, cols: 100, term: "vt220" } });
  const out = output(p);
  p.stdin.write("tty; echo TERM=$TERM; stty size\n");
  await out.waitFor(/30 100/);
  assert.match(out.text(), /\/dev\/pts\/\d+/);
  assert.match(out.text(), /TERM=vt220/);
  await p.resize(40, 120);
  p.stdin.write("stty size\n");
  await out.waitFor(/40 120/);
  p.stdin.write("exit 4\n");
  assert.equal(await p.exited, 4);
});
