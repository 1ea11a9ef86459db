import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { BuildResult } from "../../src/artifacts/result.js";
import { BootResultCache, bootKey, type BootKeyRecord } from "../../src/verify/boot-cache.js";
import type { BootOptions, BootResult } from "../../src/verify/boot.js";
import { verifyOut } from "../../src/verify/verify-out.js";

const record: BootKeyRecord = {
  flavor: "generic",
  target: "pxe",
  booted: { kernel: "sha256:k", initrd: "sha256:i", squashfs: "sha256:s", "boot-params": "sha256:p" },
  harness: "sha256:h",
  qemu: "QEMU emulator version 7.2.19",
  firmware: "seabios=1.16.2-1 ovmf=2022.11-6",
};

test("a boot's key changes with any booted file, the target, the harness, qemu or the firmware", () => {
  const k = bootKey(record);
  assert.equal(bootKey({ ...record, booted: { ...record.booted } }), k, "same record, same key");
  for (const role of Object.keys(record.booted)) {
    assert.notEqual(bootKey({ ...record, booted: { ...record.booted, [role]: "sha256:changed" } }), k, `${role} changed`);
  }
  assert.notEqual(bootKey({ ...record, target: "qcow2-bios" }), k);
  assert.notEqual(bootKey({ ...record, harness: "sha256:h2" }), k);
  assert.notEqual(bootKey({ ...record, qemu: "QEMU emulator version 8.0.0" }), k);
  assert.notEqual(bootKey({ ...record, firmware: "seabios=1.16.2-1 ovmf=2023.01-1" }), k);
});

/** An out dir with one flavor to boot over pxe, as a build writes it. */
async function outDir(root: string): Promise<string> {
  const out = path.join(root, "out");
  await mkdir(path.join(out, "generic"), { recursive: true });
  const art = (name: string, rel: string, ftype: string, flavor?: string) => ({ name, path: rel, type: "application/octet-stream", ftype, sha256: "", md5: "", size: 0, ...(flavor ? { flavor } : {}) });
  await writeFile(path.join(out, "squashfs"), "root");
  await writeFile(path.join(out, "generic/boot-kernel"), "kernel v1");
  await writeFile(path.join(out, "generic/boot-initrd"), "initrd");
  await writeFile(path.join(out, "generic/boot-params"), "root=squash:${squashfs_url}\n");
  const result = {
    recipe: { name: "t", sha256: "" },
    image: { arch: "amd64" },
    stages: [],
    artifacts: [art("squashfs", "squashfs", "squashfs"), art("boot-kernel", "generic/boot-kernel", "boot-kernel", "generic"), art("boot-initrd", "generic/boot-initrd", "boot-initrd", "generic"), art("boot-params", "generic/boot-params", "boot-params", "generic")],
    verify: [],
    kiln: { version: "0", created: "", seconds: 0, unchangedImport: false },
  } as unknown as BuildResult;
  await writeFile(path.join(out, "result.json"), JSON.stringify(result));
  return out;
}

test("an unchanged verify reports the boot as cached and runs no qemu; a changed kernel or --reverify boots again", async () => {
  const root = await mkdtemp(path.join(os.tmpdir(), "kiln-boots-"));
  try {
    const out = await outDir(root);
    const boots: string[] = [];
    const kernel = async (o: BootOptions): Promise<BootResult> => {
      boots.push(await readFile(o.kernel, "utf8"));
      await writeFile(o.serialLog, "kiln-verify marker seen\n");
      return { ok: true, seconds: 42 };
    };
    const runners = { kernel, medium: () => Promise.reject(new Error("no medium here")) };
    const bootCache = new BootResultCache(path.join(root, "cache", "boots"));

    const first = await verifyOut(out, { bootCache, runners });
    assert.deepEqual(first.map((r) => [r.ok, r.cached]), [[true, undefined]]);
    assert.equal(boots.length, 1);

    await rm(path.join(out, "logs"), { recursive: true });
    const second = await verifyOut(out, { bootCache, runners });
    assert.equal(boots.length, 1, "no boot the second time");
    assert.deepEqual(second.map((r) => [r.ok, r.cached, r.seconds]), [[true, true, 42]]);
    const written = JSON.parse(await readFile(path.join(out, "result.json"), "utf8")) as BuildResult;
    assert.equal(written.verify[0]!.cached, true, "result.json's verify entry says cached");
    assert.equal(await readFile(path.join(out, "logs/verify-generic.log"), "utf8"), "kiln-verify marker seen\n", "the passing boot's serial log is back in out/logs");

    await verifyOut(out, { bootCache, runners, reverify: true });
    assert.equal(boots.length, 2, "--reverify boots");

    await writeFile(path.join(out, "generic/boot-kernel"), "kernel v2");
    const changed = await verifyOut(out, { bootCache, runners });
    assert.deepEqual(boots, ["kernel v1", "kernel v1", "kernel v2"]);
    assert.equal(changed[0]!.cached, undefined);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

test("a failed boot is not cached: the next verify boots again", async () => {
  const root = await mkdtemp(path.join(os.tmpdir(), "kiln-boots-"));
  try {
    const out = await outDir(root);
    let boots = 0;
    const kernel = async (o: BootOptions): Promise<BootResult> => {
      boots++;
      await writeFile(o.serialLog, "Kernel panic\n");
      return { ok: false, seconds: 3, reason: "Kernel panic" };
    };
    const bootCache = new BootResultCache(path.join(root, "cache", "boots"));
    const runners = { kernel, medium: () => Promise.reject(new Error("no medium here")) };
    await verifyOut(out, { bootCache, runners });
    const again = await verifyOut(out, { bootCache, runners });
    assert.equal(boots, 2);
    assert.equal(again[0]!.ok, false);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
