/**
 * What a worker declares it builds by default: this machine's arch, then each one an enabled
 * qemu-user-static binfmt_misc handler emulates (a fake binfmt_misc folder here; the real one
 * is read when `kiln worker` starts without --arch).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { buildableArches, nativeArch } from "../../src/host/arches.js";

test("arches: native first, then the emulated ones whose handler is enabled; a disabled handler does not count", async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), "kiln-binfmt-"));
  try {
    const other = nativeArch() === "x86_64" ? "aarch64" : "x86_64";
    assert.deepEqual(await buildableArches(dir), [nativeArch()], "no handler: the native arch only");
    await writeFile(path.join(dir, `qemu-${other}`), "disabled\ninterpreter /usr/libexec/qemu-binfmt/qemu-user\n");
    assert.deepEqual(await buildableArches(dir), [nativeArch()]);
    await writeFile(path.join(dir, `qemu-${other}`), "enabled\ninterpreter /usr/libexec/qemu-binfmt/qemu-user\nflags: OCF\n");
    assert.deepEqual(await buildableArches(dir), [nativeArch(), other]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
