// Runs for real as root: the cache never pairs a layer with a parent it was not built on.
// A local mirror (Debian's bookworm plus test packages, test/helpers/apt-mirror.ts) publishes
// new versions of kiln-base-probe, a Priority: required package that minbase puts in the
// bootstrap. Two minbase recipes share that bootstrap and differ in their packages stage; the
// image's manifest (dpkg-query over the merged root) tells which bootstrap its dpkg status
// came from. The tests run in order on one cache and build on each other's state.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { readFile, rm, utimes, writeFile } from "node:fs/promises";
import path from "node:path";
import { startTestMirror, type TestMirror } from "../helpers/apt-mirror.js";
import { mountsUnder, processesUnder } from "../helpers/host.js";
import { events, runKiln, scratch, startKiln } from "../helpers/kiln.js";

let s: Awaited<ReturnType<typeof scratch>>;
let mirror: TestMirror;
const stamp = Date.now().toString(36); // versions unique to this run: the shared apt archive cache keys .debs by name
const probe = (n: number) => ({ name: "kiln-base-probe", version: `${n}.0+${stamp}`, priority: "required" as const });
const extra = (name: string) => ({ name, version: `1.0+${stamp}` });
const publish = (n: number) => mirror.publish([probe(n), extra("kiln-extra-a"), extra("kiln-extra-b")]);

const recipe = (name: string, install: string[]) => `apiVersion: kiln/v1
name: ${name}
base: { debian: bookworm, variant: minbase, mirror: "${mirror.url}" }
packages: [${install.join(", ")}]
outputs: [manifest]
verify: none
`;

before(async () => {
  s = await scratch("kiln-cache-integrity-");
  mirror = await startTestMirror(path.join(s.dir, "mirror"));
  await publish(1);
  await writeFile(path.join(s.dir, "a.yaml"), recipe("cache-a", ["kiln-extra-a"]));
  await writeFile(path.join(s.dir, "b.yaml"), recipe("cache-b", ["kiln-extra-b"]));
});

after(async () => {
  await mirror?.close();
  assert.deepEqual(await mountsUnder(s.dir), [], "no mounts left");
  assert.deepEqual(processesUnder(s.dir), [], "no processes left");
  await rm(s.dir, { recursive: true, force: true });
});

interface Built {
  probe: string;
  stages: Record<string, boolean>;
}

async function build(which: "a" | "b", ...more: string[]): Promise<Built> {
  const out = s.out(`out-${which}`);
  const r = await runKiln(["build", path.join(s.dir, `${which}.yaml`), "--cache-dir", s.cache, "--out", out, "--no-verify", "--json", ...more], { env: mirror.env });
  assert.equal(r.code, 0, r.stderr + r.stdout.slice(-3000));
  return readBuilt(out, r.stdout);
}

async function readBuilt(out: string, stdout: string): Promise<Built> {
  const manifest = await readFile(path.join(out, "squashfs.manifest"), "utf8");
  const line = manifest.split("\n").find((l) => l.startsWith("kiln-base-probe\t"));
  const stages: Record<string, boolean> = {};
  for (const e of events(stdout)) if (e.type === "stage-end") stages[e.name as string] = e.cached as boolean;
  return { probe: line?.split("\t")[1] ?? "(not installed)", stages };
}

async function stageLog(which: "a" | "b", stage: string): Promise<string> {
  return readFile(path.join(s.out(`out-${which}`), "logs", `${stage}.log`), "utf8");
}

test("(a) after a prune of only the bootstrap and a newer package in the archive, packages rebuilds on the new bootstrap", async () => {
  assert.equal((await build("a")).probe, probe(1).version);
  // The bootstrap the least recently used, and exactly its size over the limit: an LRU prune
  // that needs to remove only it (what Kiln did before: then packages stayed).
  const ls = await runKiln(["cache", "ls", "--json", "--cache-dir", s.cache]);
  const entries = JSON.parse(ls.stdout) as Array<{ name: string; size: number; key: string }>;
  const bootstrap = entries.find((e) => e.name === "bootstrap")!;
  const longAgo = new Date(Date.now() - 86400_000);
  await utimes(path.join(s.cache, "layers", bootstrap.key, "meta.json"), longAgo, longAgo);
  const total = entries.reduce((n, e) => n + e.size, 0);
  const pruned = await runKiln(["cache", "prune", "--max-size", String(total - bootstrap.size), "--json", "--cache-dir", s.cache]);
  assert.equal(pruned.code, 0, pruned.stderr);
  assert.ok((JSON.parse(pruned.stdout) as { removed: string[] }).removed.includes(bootstrap.key));

  await publish(2);
  const again = await build("a");
  assert.equal(again.stages.bootstrap, false);
  assert.equal(again.stages.packages, false, "packages rebuilt on the new bootstrap");
  assert.equal(again.probe, probe(2).version, "the image's dpkg status shows the bootstrap's new version");
});

test("(b) kiln build A --from bootstrap after the archive changed: B rebuilds its packages on the new bootstrap", async () => {
  assert.equal((await build("b")).probe, probe(2).version); // B's packages, on the current bootstrap
  assert.equal((await build("b")).stages.packages, true, "unchanged: cached");
  await publish(3);
  const a = await build("a", "--from", "bootstrap");
  assert.equal(a.probe, probe(3).version);
  const b = await build("b");
  assert.equal(b.stages.bootstrap, true, "B reuses the bootstrap A rebuilt");
  assert.equal(b.stages.packages, false, "B's packages were built on the bootstrap A replaced");
  assert.equal(b.probe, probe(3).version);
  assert.match(await stageLog("b", "packages"), /cache miss: parent rebuilt/);
});

test("(c) kiln cache prune --max-size 0 while a build runs: it waits, and the build makes a correct image", async () => {
  const out = s.out("out-c");
  const running = startKiln(["build", path.join(s.dir, "a.yaml"), "--cache-dir", s.cache, "--out", out, "--no-verify", "--json", "--from", "packages"], { env: mirror.env });
  await new Promise<void>((resolve, reject) => {
    running.onStdout((text) => {
      if (events(text).some((e) => e.type === "stage-start" && e.name === "packages")) resolve();
    });
    void running.done.then((r) => reject(new Error(`build ended before its packages stage: ${r.stderr}`)));
  });
  let buildEnded = 0;
  void running.done.then(() => (buildEnded = Date.now()));
  const prune = await runKiln(["cache", "prune", "--max-size", "0", "--json", "--cache-dir", s.cache]);
  const pruneEnded = Date.now();
  const r = await running.done;
  assert.equal(r.code, 0, r.stderr + r.stdout.slice(-3000));
  assert.equal(prune.code, 0, prune.stderr);
  assert.match(prune.stderr, /waiting for running builds to finish/);
  assert.ok(buildEnded > 0 && buildEnded <= pruneEnded, "prune finished after the build");
  const built = await readBuilt(out, r.stdout);
  assert.equal(built.probe, probe(3).version);
  const manifest = await readFile(path.join(out, "squashfs.manifest"), "utf8");
  assert.match(manifest, /^kiln-extra-a\t/m, "the packages layer is in the image");
  assert.match(manifest, /^apt\t/m, "the bootstrap is in the image");
  // And then prune did its job: nothing is left.
  assert.deepEqual(JSON.parse((await runKiln(["cache", "ls", "--json", "--cache-dir", s.cache])).stdout), []);
});
