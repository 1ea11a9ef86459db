// The serial console types at the guest's pace: a key goes only after the guest answered the one
// before (GRUB's editor echoes every key), so a slow guest under TCG loses none; a key the guest
// does not answer costs the echo wait and no more.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type Server, type Socket } from "node:net";
import os from "node:os";
import path from "node:path";
import { SerialConsole } from "../../src/verify/serial-console.js";

/** A fake guest on a unix socket: answers each key after `echoAfterMs` (or never), noting whether a key came while one was unanswered. */
async function guest(echoAfterMs: number | "never") {
  const dir = await mkdtemp(path.join(os.tmpdir(), "kiln-serial-test-"));
  const socketPath = path.join(dir, "serial.sock");
  const keys: string[] = [];
  let unanswered = 0;
  let overran = 0;
  const server: Server = createServer((s: Socket) => {
    s.on("data", (d) => {
      for (const ch of d.toString("latin1")) {
        keys.push(ch);
        if (unanswered > 0) overran++;
        unanswered++;
        if (echoAfterMs !== "never")
          setTimeout(() => {
            unanswered--;
            s.write(`\x1b[K${ch}`); // a redraw, as GRUB's editor does
          }, echoAfterMs);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  return {
    socketPath,
    keys,
    overran: () => overran,
    async close() {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await rm(dir, { recursive: true, force: true });
    },
  };
}

test("a slow guest gets each key only after it answered the one before, and all of them", async () => {
  const g = await guest(150);
  const keyboard = await SerialConsole.connect(g.socketPath);
  try {
    const text = "\x0e\x0e\x05 kiln.verify=abc\x18";
    const t0 = Date.now();
    await keyboard.type(text);
    assert.equal(g.keys.join(""), text);
    assert.equal(g.overran(), 0, "a key was sent while the guest had not answered the one before");
    assert.ok(Date.now() - t0 >= text.length * 150, "typing did not wait for the guest");
  } finally {
    await keyboard.release();
    await g.close();
  }
});

test("a guest that answers nothing still gets every key, each after the echo wait", async () => {
  const g = await guest("never");
  const keyboard = await SerialConsole.connect(g.socketPath);
  try {
    const t0 = Date.now();
    await keyboard.type("abc", 200);
    const took = Date.now() - t0;
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(g.keys.join(""), "abc");
    assert.ok(took >= 600 && took < 2000, `took ${took} ms for 3 keys at a 200 ms echo wait`);
  } finally {
    await keyboard.release();
    await g.close();
  }
});
