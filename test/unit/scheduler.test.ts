/**
 * The scheduler (src/engine/scheduler.ts) on a fake host: each task "mounts" and "starts a
 * process" in a FakeHost when it begins and releases them in `finally`, as a stage's Scope does,
 * so the tests can see what is held when, what ran together, and what is left after a failure.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { TOOL_PACKAGES, type ToolVersions } from "../../src/host/tools.js";
import { setTimeout as sleep } from "node:timers/promises";
import { defaultJobs, runTasks, stageDependencies, type RunInfo, type Task } from "../../src/engine/scheduler.js";
import { KilnError } from "../../src/errors.js";
import { parseRecipe } from "../../src/recipe/load.js";
import { planBuild } from "../../src/plan/plan.js";
import { parseDeb822Sources } from "../../src/host/apt-sources.js";

class FakeHost {
  readonly mounts = new Set<string>();
  readonly processes = new Set<string>();
  readonly events: string[] = [];
  running = 0;
  maxRunning = 0;
  slotsInUse = 0;
  maxSlots = 0;
  memoryInUse = 0;
  maxMemory = 0;
  /** Tasks whose signal was aborted while they ran. */
  readonly stopped: string[] = [];
}

interface FakeSpec {
  after?: string[];
  ms?: number;
  fail?: boolean;
  slots?: number;
  memoryMiB?: number;
  onRun?: (info: RunInfo) => void;
}

function fakeTask(host: FakeHost, id: string, spec: FakeSpec = {}): Task<string> {
  return {
    id,
    after: spec.after,
    slots: spec.slots,
    memoryMiB: spec.memoryMiB,
    async run(signal, info) {
      host.events.push(`start ${id}`);
      host.running++;
      host.maxRunning = Math.max(host.maxRunning, host.running);
      host.slotsInUse += spec.slots ?? 1;
      host.maxSlots = Math.max(host.maxSlots, host.slotsInUse);
      host.memoryInUse += spec.memoryMiB ?? 0;
      host.maxMemory = Math.max(host.maxMemory, host.memoryInUse);
      host.mounts.add(`/work/mnt/${id}`);
      host.processes.add(`apt-get (${id})`);
      spec.onRun?.(info);
      try {
        await sleep(spec.ms ?? 20, undefined, { signal });
        if (spec.fail) throw new Error(`${id}: dpkg returned an error code`);
        return `result of ${id}`;
      } catch (e) {
        if (signal.aborted) host.stopped.push(id);
        throw e;
      } finally {
        // Released in reverse, after a moment, as a Scope unmounts (umount is not instant).
        host.processes.delete(`apt-get (${id})`);
        await sleep(5);
        host.mounts.delete(`/work/mnt/${id}`);
        host.running--;
        host.slotsInUse -= spec.slots ?? 1;
        host.memoryInUse -= spec.memoryMiB ?? 0;
        host.events.push(`end ${id}`);
      }
    },
  };
}

const never = new AbortController().signal;

test("a task starts only after every task it waits for has ended", async () => {
  const host = new FakeHost();
  const t = (id: string, after: string[] = [], ms = 15) => fakeTask(host, id, { after, ms });
  const tasks = [
    t("bootstrap"), t("packages", ["bootstrap"]), t("seal", ["packages"]),
    t("kernel:generic", ["seal"], 40), t("kernel:cloud", ["seal"], 10), t("squashfs", ["seal"], 10),
    t("manifest", ["seal"]), t("qcow2", ["kernel:generic"]), t("iso", ["squashfs", "kernel:generic"]),
  ];
  await runTasks(tasks, { jobs: 4 }, never);
  const at = (e: string) => host.events.indexOf(e);
  for (const task of tasks) {
    for (const d of task.after ?? []) assert.ok(at(`end ${d}`) < at(`start ${task.id}`), `${task.id} started before ${d} ended: ${host.events.join(", ")}`);
  }
  // …and as soon as they have: the iso did not wait for the unrelated kernel:cloud or manifest to be last.
  assert.ok(at("start kernel:cloud") < at("end kernel:generic"), "siblings on the sealed root ran side by side");
  assert.equal(host.events.length, tasks.length * 2);
});

test("stageDependencies: flavors, squashfs and manifest wait for the seal only; qcow2 for its flavor; iso for squashfs and its flavor", () => {
  const recipe = `apiVersion: kiln/v1
name: t
base: { debian: bookworm }
packages: [systemd]
kernels: [{ flavor: generic, package: linux-image-amd64 }, { flavor: cloud, package: linux-image-cloud-amd64 }]
outputs: [squashfs, kernel, initrd, manifest, tarball, qcow2, iso]
`;
  const plan = planBuild(
    { recipe: parseRecipe(recipe, "r.yaml", "/r"), file: "/r/r.yaml", dir: "/r", sha256: "x", inputs: {} },
    // Every tool a stage drives has a version, as on a set-up host (the planner refuses a missing one).
    { tools: Object.fromEntries(Object.keys(TOOL_PACKAGES).map((t) => [t, "1.0"])) as ToolVersions, hostSources: parseDeb822Sources("Types: deb\nURIs: http://m.example/debian\nSuites: bookworm\nComponents: main\n"), initramfsDigest: "sha256:a" },
  );
  const deps = stageDependencies([...plan.root, ...plan.kernels, ...plan.artifacts]);
  assert.deepEqual(Object.fromEntries(deps), {
    bootstrap: [],
    packages: ["bootstrap"],
    seal: ["packages"],
    "kernel:generic": ["seal"],
    "kernel:cloud": ["seal"],
    squashfs: ["seal"],
    manifest: ["seal"],
    tarball: ["seal"],
    qcow2: ["kernel:generic"],
    iso: ["squashfs", "kernel:generic"],
  });
});

test("--jobs caps how many tasks run at once, and is the cap (not a serial run)", async () => {
  for (const jobs of [1, 2, 3]) {
    const host = new FakeHost();
    const tasks = Array.from({ length: 6 }, (_, i) => fakeTask(host, `kernel:${i}`, { ms: 30 }));
    await runTasks(tasks, { jobs }, never);
    assert.equal(host.maxRunning, jobs, `jobs ${jobs}`);
  }
});

test("a task takes its slots and its memory: two-vCPU guests one at a time on 2 slots, as many as memory allows on more", async () => {
  const boots = (host: FakeHost) => Array.from({ length: 4 }, (_, i) => fakeTask(host, `boot:${i}`, { ms: 25, slots: 2, memoryMiB: 2048 }));
  const two = new FakeHost();
  await runTasks(boots(two), { jobs: 2 }, never);
  assert.equal(two.maxRunning, 1);
  const eight = new FakeHost();
  await runTasks(boots(eight), { jobs: 8, memoryMiB: 5000 }, never);
  assert.equal(eight.maxRunning, 2, "memory for two guests of 2 GiB");
  assert.ok(eight.maxMemory <= 5000);
  // A task bigger than the whole budget still runs, alone.
  const big = new FakeHost();
  await runTasks([fakeTask(big, "huge", { slots: 4, memoryMiB: 9000 }), fakeTask(big, "small")], { jobs: 2, memoryMiB: 4096 }, never);
  assert.equal(big.maxRunning, 1);
  assert.deepEqual(big.events, ["start huge", "end huge", "start small", "end small"]);
});

test("a ready task that does not fit is not overtaken by later ones", async () => {
  const host = new FakeHost();
  await runTasks([fakeTask(host, "a", { ms: 30 }), fakeTask(host, "boot", { slots: 2, ms: 10 }), fakeTask(host, "b", { ms: 10 })], { jobs: 2 }, never);
  assert.deepEqual(host.events.slice(0, 4), ["start a", "end a", "start boot", "end boot"]);
});

test("a failure stops its running siblings, releases what they hold and starts nothing more; the first error is thrown", async () => {
  const host = new FakeHost();
  const tasks = [
    fakeTask(host, "seal", { ms: 5 }),
    fakeTask(host, "kernel:generic", { after: ["seal"], ms: 60_000 }),
    fakeTask(host, "kernel:cloud", { after: ["seal"], ms: 30, fail: true }),
    fakeTask(host, "squashfs", { after: ["seal"], ms: 60_000 }),
    fakeTask(host, "manifest", { after: ["seal"], ms: 10 }), // waits for a slot: never starts
    fakeTask(host, "qcow2", { after: ["kernel:cloud"] }),
  ];
  const t0 = Date.now();
  await assert.rejects(runTasks(tasks, { jobs: 3 }, never), /kernel:cloud: dpkg returned an error code/);
  assert.ok(Date.now() - t0 < 5000, "the siblings were stopped, not waited out");
  assert.deepEqual([...host.mounts], [], "no mount left when the run ends");
  assert.deepEqual([...host.processes], [], "no process left when the run ends");
  assert.deepEqual(host.stopped.sort(), ["kernel:generic", "squashfs"]);
  assert.ok(!host.events.includes("start manifest") && !host.events.includes("start qcow2"), host.events.join(", "));
});

test("cancel (Ctrl-C, SIGTERM) stops every running task, waits for their release, and throws CANCELLED", async () => {
  const host = new FakeHost();
  const ctl = new AbortController();
  setTimeout(() => ctl.abort("SIGTERM"), 30);
  const run = runTasks([fakeTask(host, "kernel:a", { ms: 60_000 }), fakeTask(host, "kernel:b", { ms: 60_000 }), fakeTask(host, "after", { after: ["kernel:a"] })], { jobs: 2 }, ctl.signal);
  await assert.rejects(run, (e: unknown) => e instanceof KilnError && e.code === "CANCELLED" && /SIGTERM/.test(e.message));
  assert.deepEqual([...host.mounts], []);
  assert.deepEqual(host.stopped.sort(), ["kernel:a", "kernel:b"]);
  assert.ok(!host.events.includes("start after"));
});

test("results come in the order of the tasks, whatever order they finish in", async () => {
  for (let round = 0; round < 5; round++) {
    const host = new FakeHost();
    const ids = ["kernel:generic", "kernel:cloud", "kernel:rt", "squashfs", "manifest"];
    const tasks = ids.map((id) => fakeTask(host, id, { ms: Math.floor(Math.random() * 40) }));
    assert.deepEqual(await runTasks(tasks, { jobs: 5 }, never), ids.map((id) => `result of ${id}`));
  }
  const host = new FakeHost();
  const reversed = ["a", "b", "c"].map((id, i) => fakeTask(host, id, { ms: 60 - i * 25 }));
  assert.deepEqual(await runTasks(reversed, { jobs: 3 }, never), ["result of a", "result of b", "result of c"]);
  assert.deepEqual(host.events.filter((e) => e.startsWith("end")), ["end c", "end b", "end a"], "they did finish in reverse");
});

test("a task sees which others run now and, at its end, every one that ran beside it", async () => {
  const host = new FakeHost();
  const seen: Record<string, { running: string[]; info: RunInfo }> = {};
  const watch = (id: string) => (info: RunInfo) => (seen[id] = { running: info.running(), info });
  await runTasks(
    [
      fakeTask(host, "kernel:generic", { ms: 60, onRun: watch("kernel:generic") }),
      fakeTask(host, "kernel:cloud", { ms: 10, onRun: watch("kernel:cloud") }),
      fakeTask(host, "squashfs", { ms: 10, after: ["kernel:cloud"], onRun: watch("squashfs") }),
      fakeTask(host, "manifest", { ms: 10, after: ["squashfs"], onRun: watch("manifest") }),
    ],
    { jobs: 2 },
    never,
  );
  assert.deepEqual(seen["kernel:generic"]!.running, []);
  assert.deepEqual(seen["kernel:cloud"]!.running, ["kernel:generic"]);
  assert.deepEqual(seen.squashfs!.running, ["kernel:generic"]);
  assert.deepEqual(seen["kernel:generic"]!.info.ranWith(), ["kernel:cloud", "squashfs", "manifest"]);
  assert.deepEqual(seen["kernel:cloud"]!.info.ranWith(), ["kernel:generic"]);
});

test("waiting on an unknown task or on each other is a bug reported at once", async () => {
  const host = new FakeHost();
  await assert.rejects(runTasks([fakeTask(host, "a", { after: ["nope"] })], { jobs: 1 }, never), /a waits for nope, which is not a task/);
  await assert.rejects(runTasks([fakeTask(host, "a", { after: ["b"] }), fakeTask(host, "b", { after: ["a"] })], { jobs: 1 }, never), /a, b wait for each other/);
  await assert.rejects(runTasks([fakeTask(host, "a")], { jobs: 0 }, never), /jobs must be a positive integer/);
});

test("the default job count: one per core, at most one per GiB of available memory, at least one", () => {
  assert.equal(defaultJobs({ cores: 2, availableMiB: 22_000 }), 2);
  assert.equal(defaultJobs({ cores: 16, availableMiB: 3_500 }), 3);
  assert.equal(defaultJobs({ cores: 4, availableMiB: 300 }), 1);
  assert.equal(defaultJobs({ cores: 1, availableMiB: 64_000 }), 1);
});
