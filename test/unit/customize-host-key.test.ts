// A session's generated host key always parses: ssh2 writes a malformed ed25519 key about 3 times
// in 1,000, and a session started with one failed ("the session's host key is not a private key").
import { test } from "node:test";
import assert from "node:assert/strict";
import ssh2 from "ssh2";
import { generateHostKey } from "../../src/customize/session-server.js";

test("3,000 generated session host keys are all private keys ssh2 can read back", () => {
  let bad = 0;
  for (let i = 0; i < 3000; i++) {
    const parsed = ssh2.utils.parseKey(generateHostKey());
    const key = Array.isArray(parsed) ? parsed[0] : parsed;
    if (!key || key instanceof Error || !key.isPrivateKey()) bad++;
  }
  assert.equal(bad, 0);
});
