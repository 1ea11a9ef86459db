import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { formatResult } from "../../src/cli/commands/verify.js";
import { verifyOut } from "../../src/verify/verify-out.js";

let out: string;

before(async () => {
  out = await mkdtemp(path.join(tmpdir(), "kiln-verify-out-"));
});
after(async () => {
  await rm(out, { recursive: true, force: true });
});

test("an out dir without result.json is refused by name", async () => {
  await assert.rejects(verifyOut(out), (e: Error & { code?: string }) => e.code === "INPUT_INVALID" && /result\.json: not found/.test(e.message));
});

test("an unknown --flavor lists the flavors the build has", async () => {
  const dir = path.join(out, "b");
  await mkdir(dir);
  await writeFile(
    path.join(dir, "result.json"),
    JSON.stringify({
      recipe: { name: "r", sha256: "x" },
      stages: [],
      artifacts: [
        { name: "squashfs", path: "squashfs", type: "application/vnd.cray.image.rootfs.squashfs", ftype: "squashfs" },
        { name: "boot-kernel", flavor: "generic", path: "generic/boot-kernel", type: "application/vnd.cray.image.kernel", ftype: "boot-kernel" },
        { name: "boot-kernel", flavor: "rt", path: "rt/boot-kernel", type: "application/vnd.cray.image.kernel", ftype: "boot-kernel" },
      ],
      verify: [],
    }),
  );
  await assert.rejects(verifyOut(dir, { flavors: ["cloud"] }), /--flavor cloud: not in this build; it has generic, rt/);
});

test("result lines, as kiln verify prints them", () => {
  assert.equal(formatResult({ flavor: "generic", ok: true, seconds: 48, log: "logs/verify-generic.log" }), "✓ generic  booted in 48.0 s  (logs/verify-generic.log)\n");
  assert.equal(
    formatResult({ flavor: "rt", ok: false, seconds: 300, log: "logs/verify-rt.log", reason: "no sign of userspace after 300 s: …" }),
    "✗ rt  no sign of userspace after 300 s: …  (logs/verify-rt.log)\n",
  );
});
