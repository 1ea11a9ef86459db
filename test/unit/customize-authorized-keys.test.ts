import { test } from "node:test";
import assert from "node:assert/strict";
import ssh2 from "ssh2";
import { findAuthorizedKey, fingerprint, parseAuthorizedKeys, verifySignature } from "../../src/customize/authorized-keys.js";
import { KilnError } from "../../src/errors.js";

// Made with ssh-keygen; the fingerprints are what `ssh-keygen -lf` printed for them.
const ALICE = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICO5+eHSpg1K0RM1Fh1sK5ipyef0vmW5eTLov5rCwbTY alice@example";
const ALICE_FP = "SHA256:4dKoDhJlK+fba/Ho6c8Ylyf7nMqWreztPbqrLSyx18I";
const BOB =
  "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDhVoOzNi7aZgY+8sBA6EwAd9+cZfr/FopvPBfNuSN9Jw1fcCC9NlW+kq9rpND5C1cfNrNTI4LkL0rWN/jzx+B5q7n22rYbctTMkTudL/K7p35TI4RnwSAiaT6eFMYxnvatjs1fuALHVNd+7/upn2PcYeX+gFfS7OWVHtDC/ovxIQ== bob";
const BOB_FP = "SHA256:bcK7q+oSZ9Smug8X3oh0Q+dwMbmCjb8nsAoxwN2OiAI";

test("key lines parse with the fingerprints ssh-keygen prints; blanks and comments are skipped", () => {
  const keys = parseAuthorizedKeys(["", "# the operators", ALICE, `  ${BOB}  `]);
  assert.deepEqual(
    keys.map((k) => [k.fingerprint, k.comment]),
    [[ALICE_FP, "alice@example"], [BOB_FP, "bob"]],
  );
  assert.equal(fingerprint(keys[0]!.blob), ALICE_FP);
});

test("options, private keys and garbage are refused, every bad line named at once", () => {
  const priv = ssh2.utils.generateKeyPairSync("ed25519").private;
  try {
    parseAuthorizedKeys([ALICE, `from="10.0.0.0/8" ${ALICE}`, "ssh-ed25519 not-base64!", priv]);
    assert.fail("expected a refusal");
  } catch (e) {
    assert.ok(e instanceof KilnError);
    assert.equal(e.code, "INPUT_INVALID");
    assert.deepEqual(e.problems.map((p) => p.path), ["authorizedKeys[1]", "authorizedKeys[2]", "authorizedKeys[3]"]);
    assert.match(e.problems[0]!.message, /options .* are not supported/);
    assert.match(e.problems[2]!.message, /does not start with a key type|private key/);
  }
});

test("a key is matched by its blob, and only a signature made with its private key verifies", () => {
  const pair = ssh2.utils.generateKeyPairSync("ed25519");
  const other = ssh2.utils.generateKeyPairSync("ed25519");
  const [mine, bob] = parseAuthorizedKeys([pair.public, BOB]);
  const priv = ssh2.utils.parseKey(pair.private) as ssh2.ParsedKey;
  const otherPriv = ssh2.utils.parseKey(other.private) as ssh2.ParsedKey;
  const data = Buffer.from("session id + userauth request");

  assert.equal(findAuthorizedKey([mine!, bob!], priv.getPublicSSH()), mine);
  assert.equal(findAuthorizedKey([bob!], priv.getPublicSSH()), undefined);
  assert.equal(verifySignature(mine!, data, priv.sign(data), undefined), true);
  assert.equal(verifySignature(mine!, Buffer.from("other data"), priv.sign(data), undefined), false);
  assert.equal(verifySignature(mine!, data, otherPriv.sign(data), undefined), false);
  assert.equal(verifySignature(mine!, data, Buffer.alloc(3), undefined), false);
});
