/**
 * Boots side by side (verify-out.ts over scheduler.ts), with the boot faked (no qemu): how many
 * guests run at once for the job slots and memory given, what the onBoot hooks say ran together,
 * the result order, and that the verify log keeps each boot's lines together.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { BuildResult } from "../../src/artifacts/result.js";
import type { BootOptions, BootResult } from "../../src/verify/boot.js";
import { verifyOut, type VerifyOptions } from "../../src/verify/verify-out.js";

const FLAVORS = { generic: 120, cloud: 30, rt: 60 }; // ms each fake boot takes

async function outDir(root: string): Promise<string> {
  const out = path.join(root, "out");
  const art = (name: string, rel: string, ftype: string, flavor?: string) => ({ name, path: rel, type: "application/octet-stream", ftype, sha256: "", md5: "", size: 0, ...(flavor ? { flavor } : {}) });
  const artifacts = [art("squashfs", "squashfs", "squashfs")];
  await mkdir(out, { recursive: true });
  await writeFile(path.join(out, "squashfs"), "root");
  for (const f of Object.keys(FLAVORS)) {
    await mkdir(path.join(out, f), { recursive: true });
    await writeFile(path.join(out, f, "boot-kernel"), f);
    await writeFile(path.join(out, f, "boot-initrd"), "initrd");
    await writeFile(path.join(out, f, "boot-params"), "root=squash:${squashfs_url}\n");
    artifacts.push(art("boot-kernel", `${f}/boot-kernel`, "boot-kernel", f), art("boot-initrd", `${f}/boot-initrd`, "boot-initrd", f), art("boot-params", `${f}/boot-params`, "boot-params", f));
  }
  const result = { recipe: { name: "t", sha256: "" }, image: { arch: "amd64" }, stages: [], artifacts, verify: [], kiln: { version: "0", created: "", seconds: 0, unchangedImport: false } } as unknown as BuildResult;
  await writeFile(path.join(out, "result.json"), JSON.stringify(result));
  return out;
}

/** Runs verifyOut with fake guests; returns what it saw. */
async function run(opts: Pick<VerifyOptions, "jobs" | "memoryMiB">) {
  const root = await mkdtemp(path.join(os.tmpdir(), "kiln-verify-par-"));
  try {
    const out = await outDir(root);
    let now = 0;
    let most = 0;
    const finished: string[] = [];
    const kernel = async (o: BootOptions): Promise<BootResult> => {
      const flavor = await readFile(o.kernel, "utf8");
      most = Math.max(most, ++now);
      o.log?.line(`${flavor}: qemu started`);
      await sleep(FLAVORS[flavor as keyof typeof FLAVORS] / 2);
      o.log?.line(`${flavor}: kernel booting`);
      await sleep(FLAVORS[flavor as keyof typeof FLAVORS] / 2);
      o.log?.line(`${flavor}: marker seen`);
      await writeFile(o.serialLog, "marker\n");
      now--;
      finished.push(flavor);
      return { ok: true, seconds: 1 };
    };
    const lines: string[] = [];
    const starts: Record<string, string[]> = {};
    const ranWith: Record<string, string[]> = {};
    const results = await verifyOut(out, {
      ...opts,
      log: { line: (l) => lines.push(l) },
      runners: { kernel, medium: () => Promise.reject(new Error("no medium here")) },
      onBoot: { start: (b) => (starts[b.flavor] = b.running), end: (r, w) => (ranWith[r.flavor] = w) },
    });
    const written = JSON.parse(await readFile(path.join(out, "result.json"), "utf8")) as BuildResult;
    return { most, finished, lines, starts, ranWith, results, written };
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

test("boots run side by side as the job slots allow (2 per guest), results in target order, each boot's log lines kept together", async () => {
  const r = await run({ jobs: 6, memoryMiB: 64_000 });
  assert.equal(r.most, 3, "three guests at once on 6 slots");
  assert.deepEqual(r.finished, ["cloud", "rt", "generic"], "they finished in another order…");
  assert.deepEqual(r.results.map((v) => v.flavor), ["generic", "cloud", "rt"], "…than result order");
  assert.deepEqual(r.written.verify.map((v) => v.flavor), ["generic", "cloud", "rt"], "result.json too");
  assert.deepEqual(r.starts.cloud, ["boot:generic:pxe"]);
  assert.deepEqual(r.ranWith.generic, ["boot:cloud:pxe", "boot:rt:pxe"]);
  // One block per boot, in start order: no interleaving in the verify log.
  const mine = r.lines.filter((l) => /^(generic|cloud|rt): /.test(l)).map((l) => l.split(":")[0]);
  assert.deepEqual(mine, ["generic", "generic", "generic", "cloud", "cloud", "cloud", "rt", "rt", "rt"], r.lines.join("\n"));
});

test("two slots hold one guest: boots one at a time, nobody ran beside anybody", async () => {
  const r = await run({ jobs: 2, memoryMiB: 64_000 });
  assert.equal(r.most, 1);
  assert.deepEqual(r.finished, ["generic", "cloud", "rt"]);
  assert.deepEqual(r.ranWith, { generic: [], cloud: [], rt: [] });
});

test("memory caps the guests too: 2 GiB guests in a 5000 MiB budget, two at a time", async () => {
  const r = await run({ jobs: 16, memoryMiB: 5000 });
  assert.equal(r.most, 2);
  assert.deepEqual(r.results.map((v) => v.ok), [true, true, true]);
});
