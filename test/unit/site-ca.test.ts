import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { KilnError } from "../../src/errors.js";
import { describeFailure } from "../../src/jobs/worker.js";
import { SITE_CA_DIR, siteCa } from "../../src/stages/site-ca.js";
import type { LayerContext } from "../../src/stages/stage.js";

function layerContext(root: string, lines: string[]): LayerContext {
  // Only what the stage reaches before it needs a chroot; anything else is a test bug.
  return { root, name: "site-ca", log: { line: (t: string) => lines.push(t) }, signal: new AbortController().signal } as unknown as LayerContext;
}

test("a site CA that is not PEM is the operator's bad input (INPUT_INVALID naming the file and --site-ca), not a bug in Kiln", async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), "kiln-site-ca-"));
  try {
    const good = path.join(dir, "good.pem");
    const bad = path.join(dir, "not-a-cert.pem");
    await writeFile(good, "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
    await writeFile(bad, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5 operator@site\n");
    const root = path.join(dir, "root");
    const lines: string[] = [];
    const err = await siteCa.run(layerContext(root, lines), { certificates: [good, bad] }).then(
      () => assert.fail("a non-PEM site CA was accepted"),
      (e: unknown) => e,
    );
    assert.ok(err instanceof KilnError, `not a coded error: ${String(err)}`);
    assert.equal(err.code, "INPUT_INVALID");
    assert.equal(err.exitCode, 2);
    assert.match(err.message, new RegExp(`site CA ${bad} is not a PEM certificate`));
    assert.deepEqual(err.problems.map((p) => p.path), ["--site-ca"]);
    const reported = describeFailure(err, new AbortController().signal);
    assert.ok(reported.includes(bad), reported);
    assert.doesNotMatch(reported, /internal error|a bug in Kiln/);
    // The good one before it was copied; the bad one was not.
    assert.match(await readFile(path.join(root, SITE_CA_DIR, "good.crt"), "utf8"), /BEGIN CERTIFICATE/);
    await assert.rejects(readFile(path.join(root, SITE_CA_DIR, "not-a-cert.crt")), { code: "ENOENT" });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
