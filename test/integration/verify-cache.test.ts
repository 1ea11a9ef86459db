// Runs for real as root, with one TCG boot: an unchanged rebuild with verify: boot reports the
// boot as cached, starts no qemu and takes seconds; --reverify boots again is left to the unit
// test (test/unit/verify-boot-cache.test.ts), which fakes the boot.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import type { BuildResult } from "../../src/artifacts/result.js";
import { mountsUnder, processesUnder } from "../helpers/host.js";
import { events, runKiln, scratch, startKiln } from "../helpers/kiln.js";

const RECIPE = `apiVersion: kiln/v1
name: verify-cache-test
base: { debian: bookworm, variant: minbase }
packages: [systemd, systemd-sysv, udev]
kernels:
  - flavor: generic
    package: linux-image-amd64
outputs: [squashfs, kernel, initrd]
verify: boot
`;

let s: Awaited<ReturnType<typeof scratch>>;
before(async () => {
  s = await scratch("kiln-verify-cache-");
  await writeFile(path.join(s.dir, "recipe.yaml"), RECIPE);
});
after(async () => {
  assert.deepEqual(await mountsUnder(s.dir), [], "no mounts left");
  assert.deepEqual(processesUnder(s.dir), [], "no processes left");
  await rm(s.dir, { recursive: true, force: true });
});

test("an unchanged rebuild with verify: boot reports the boot as cached and runs no qemu", async () => {
  const args = ["build", path.join(s.dir, "recipe.yaml"), "--cache-dir", s.cache, "--out", s.out("out"), "--json"];
  const first = await runKiln(args);
  assert.equal(first.code, 0, first.stderr + first.stdout.slice(-3000));
  const booted = events(first.stdout).filter((e) => e.type === "boot");
  assert.deepEqual(booted.map((e) => [e.flavor, e.target, e.ok, e.cached]), [["generic", "pxe", true, false]]);

  const t0 = Date.now();
  const second = startKiln(args);
  let qemuSeen = false;
  const watch = setInterval(() => {
    for (const pid of processesUnder(s.dir)) {
      try {
        if (/qemu/.test(readFileSync(`/proc/${pid}/comm`, "utf8"))) qemuSeen = true;
      } catch {
        // gone meanwhile
      }
    }
  }, 200);
  const r = await second.done;
  clearInterval(watch);
  const seconds = (Date.now() - t0) / 1000;
  assert.equal(r.code, 0, r.stderr + r.stdout.slice(-3000));
  assert.equal(qemuSeen, false, "no qemu started");
  const ev = events(r.stdout);
  assert.deepEqual(ev.filter((e) => e.type === "boot").map((e) => [e.flavor, e.target, e.ok, e.cached]), [["generic", "pxe", true, true]]);
  assert.ok(ev.filter((e) => e.type === "stage-end").every((e) => e.cached === true), "every stage and the verify cached");
  const result = JSON.parse(await readFile(path.join(s.out("out"), "result.json"), "utf8")) as BuildResult;
  assert.equal(result.verify[0]!.cached, true);
  console.log(`unchanged rebuild with verify: boot took ${seconds.toFixed(1)} s`);
  assert.ok(seconds < 30, `took ${seconds} s`);
});
