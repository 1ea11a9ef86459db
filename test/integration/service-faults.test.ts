/**
 * Faults across machines. The service, PostgreSQL, Ceph RGW and two workers each run in a network
 * namespace of their own ("machines" with their own addresses on one bridge, test/helpers/netns.ts)
 * and build a batch of create jobs (a small imported root, a script that sleeps so that a fault
 * lands mid-build, and for the upload fault a large random file). One fault at a time:
 *   1. SIGKILL of a worker mid-build, restarted at once under the same name;
 *   2. a PostgreSQL restart while jobs build;
 *   3. an RGW restart while a job uploads;
 *   4. a worker cut off the network for longer than the worker timeout, then reconnected.
 * After each: every job ends `success` (retried where its worker was lost) or `error` with the
 * reason; the job of a lost worker is released within worker-timeout + one heartbeat; no job runs
 * on two workers at once. At the end: no record links an object that is not whole, and no object
 * is left without a record. The figures (jobs, faults, recovery times, records lost) are printed
 * as `# faults:` lines for the notes.
 */
import { before, after, test } from "node:test";
import assert from "node:assert/strict";
import { execFile, execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { chmod, copyFile, mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { Catalog } from "../../src/catalog/catalog.js";
import type { ImageRecord, JobRecord } from "../../src/catalog/records.js";
import { openStore } from "../../src/store/open-store.js";
import type { ObjectStore } from "../../src/store/object-store.js";
import { processesUnder } from "../helpers/host.js";
import { REPO, runKiln } from "../helpers/kiln.js";
import { TestNetwork } from "../helpers/netns.js";
import { createToken, startServe, startWorker, type ServiceProcess } from "../helpers/service-process.js";

const run = promisify(execFile);
const HEARTBEAT = 1;
const TIMEOUT = 10;

let net: TestNetwork;
let dir: string;
let pgUrl: string;
let s3env: Record<string, string>;
let serve: ServiceProcess;
let catalog: Catalog;
let store: ObjectStore;
let apiUrl: string;
let token: string;
let keyId: string;
const workers = new Map<string, ServiceProcess>();
const jobs: string[] = [];
const figures: string[] = [];

const common = () => ["--database", pgUrl, "--store", s3env.KILN_S3_URL!, "--heartbeat", String(HEARTBEAT), "--worker-timeout", String(TIMEOUT), "--job-retries", "2", "--verify", "never", "--concurrency", "2"];
const cacheOf = (name: string) => path.join(dir, name, "cache");

async function server(script: string, machine: string, action: "start" | "stop", env: Record<string, string> = {}): Promise<string> {
  const state = path.join(dir, script.replace(/\.sh$/, ""));
  const { stdout } = await run("ip", ["netns", "exec", net.machine(machine).ns, "env", ...Object.entries(env).map(([k, v]) => `${k}=${v}`), "bash", path.join(REPO, "scripts", script), action, state], { timeout: 900_000 });
  if (action === "start") return (await run("bash", [path.join(REPO, "scripts", script), "env", state])).stdout;
  return stdout;
}

function envOf(text: string): Record<string, string> {
  return Object.fromEntries([...text.matchAll(/^export (\w+)='([^']*)'$/gm)].map((m) => [m[1]!, m[2]!]));
}

async function startNamedWorker(name: string): Promise<ServiceProcess> {
  const w = await startWorker([...common(), "--data-dir", path.join(dir, name, "data"), "--cache-dir", cacheOf(name), "--worker-name", name], s3env, net.machine(name).prefix);
  workers.set(name, w);
  return w;
}

async function api<T>(method: string, route: string, body?: unknown): Promise<T> {
  const r = await fetch(`${apiUrl}${route}`, { method, headers: { authorization: `Bearer ${token}`, ...(body ? { "content-type": "application/json" } : {}) }, body: body ? JSON.stringify(body) : undefined });
  const text = await r.text();
  assert.ok(r.ok, `${method} ${route}: ${r.status} ${text}`);
  return (text ? JSON.parse(text) : undefined) as T;
}

/** A recipe that imports the busybox base, sleeps `sleep` s in a script (and writes `blobMiB` of noise). */
async function createJob(label: string, sleep: number, blobMiB = 0): Promise<string> {
  const rdir = path.join(dir, "recipes", label);
  await mkdir(rdir, { recursive: true });
  await copyFile(path.join(dir, "base.squashfs"), path.join(rdir, "base.squashfs"));
  const blob = blobMiB > 0 ? `dd if=/dev/urandom of=/var/blob bs=1048576 count=${blobMiB} 2>/dev/null; ` : "";
  await writeFile(
    path.join(rdir, "recipe.yaml"),
    `apiVersion: kiln/v1\nname: fault-${label}\nbase: {image: ./base.squashfs, format: squashfs}\nscripts: [{name: work, run: "echo ${label} > /etc/job; ${blob}sleep ${sleep}"}]\noutputs: [squashfs, manifest]\n`,
  );
  const up = await runKiln(["ims", "recipes", "upload", rdir, "--json"], { env: { KILN_URL: apiUrl, KILN_TOKEN: token } });
  assert.equal(up.code, 0, up.stderr);
  const recipeId = (JSON.parse(up.stdout) as { id: string }).id;
  const job = await api<{ id: string }>("POST", "/v3/jobs", { job_type: "create", artifact_id: recipeId, public_key_id: keyId, image_root_archive_name: `fault-${label}` });
  jobs.push(job.id);
  return job.id;
}

const job = async (id: string) => (await catalog.get("jobs", id)) as JobRecord;

async function until<T>(what: string, fn: () => Promise<T | undefined | false>, seconds: number): Promise<T> {
  const end = Date.now() + seconds * 1000;
  for (;;) {
    const v = await fn().catch((e: unknown) => {
      if (e instanceof assert.AssertionError) throw e; // a job that failed: no point waiting
      return undefined; // the catalog is away for a moment (a fault in progress)
    });
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${seconds} s waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

const ended = (id: string, seconds = 300) => until(`job ${id} to end`, async () => {
  const j = await job(id);
  return j.status === "success" || j.status === "error" ? j : undefined;
}, seconds);

async function log(id: string): Promise<string> {
  return (await catalog.readLog(id, 0, 10_000)).map((c) => c.text).join("");
}

/** The first of `ids` whose build runs its script (the moment a fault lands mid-build). */
function jobInScript(ids: string[]): Promise<JobRecord> {
  return until("a job in its script", async () => {
    for (const id of ids) {
      const j = await job(id);
      if (j.status === "building_image" && j.kiln.worker && (await log(id)).includes("[scripts]")) return j;
    }
    return undefined;
  }, 180);
}

before(async () => {
  net = TestNetwork.create(["db", "s3", "api", "w1", "w2"]);
  dir = await mkdtemp("/var/tmp/kiln-faults-");
  await chmod(dir, 0o711); // the postgres user reaches its state dir inside
  // The base image: busybox and the folders a Debian root has.
  const root = path.join(dir, "base");
  for (const d of ["bin", "etc", "root", "tmp", "usr/bin", "usr/sbin", "var/lib/dpkg", "dev", "proc", "sys", "run"]) await mkdir(path.join(root, d), { recursive: true });
  await copyFile("/bin/busybox", path.join(root, "bin/busybox"));
  for (const applet of execFileSync("/bin/busybox", ["--list"], { encoding: "utf8" }).split("\n")) {
    if (applet && applet !== "busybox") await symlink("busybox", path.join(root, "bin", applet));
  }
  await writeFile(path.join(root, "etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n");
  await writeFile(path.join(root, "var/lib/dpkg/status"), "");
  execFileSync("mksquashfs", [root, path.join(dir, "base.squashfs"), "-quiet", "-noappend", "-comp", "zstd"]);

  const db = net.machine("db").address;
  const s3 = net.machine("s3").address;
  const [pgEnv, s3Env] = await Promise.all([
    server("postgres-server.sh", "db", "start", { PG_LISTEN: "0.0.0.0", PG_TRUST_NETWORK: net.subnet }),
    server("s3-server.sh", "s3", "start", { S3_RGW_BIND: "0.0.0.0" }),
  ]);
  pgUrl = envOf(pgEnv).KILN_TEST_DATABASE_URL!.replace("127.0.0.1", db);
  const s3vars = envOf(s3Env);
  s3env = { KILN_S3_URL: s3vars.KILN_S3_URL!.replace("127.0.0.1", s3), KILN_S3_ACCESS_KEY: s3vars.KILN_S3_ACCESS_KEY!, KILN_S3_SECRET_KEY: s3vars.KILN_S3_SECRET_KEY! };

  token = await createToken(path.join(dir, "api"), "admin");
  serve = await startServe(["--data-dir", path.join(dir, "api"), "--no-worker", "--listen", `${net.machine("api").address}:8080`, ...common()], s3env, net.machine("api").prefix);
  apiUrl = serve.url;
  await Promise.all([startNamedWorker("w1"), startNamedWorker("w2")]);
  catalog = await Catalog.open(pgUrl, path.join(dir, "observer"));
  store = await openStore(s3env.KILN_S3_URL!, { env: s3env });
  keyId = (await api<{ id: string }>("POST", "/v3/public-keys", { name: "op", public_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKiln operator@test" })).id;
});

after(async () => {
  console.log(figures.map((f) => `# faults: ${f}`).join("\n"));
  for (const w of workers.values()) await w.stop().catch(() => {});
  await serve?.stop().catch(() => {});
  await catalog?.close().catch(() => {});
  await store?.close().catch(() => {});
  if (net) {
    await server("s3-server.sh", "s3", "stop").catch(() => {});
    await server("postgres-server.sh", "db", "stop").catch(() => {});
    net.destroy();
  }
  if (dir) await rm(dir, { recursive: true, force: true });
});

test("a worker SIGKILLed mid-build and restarted under its name: its job is released in time and retried; its processes die with it", async () => {
  const ids = [await createJob("kill-a", 25), await createJob("kill-b", 25)];
  const victim = await jobInScript(ids);
  const name = victim.kiln.worker!;
  const t0 = Date.now();
  workers.get(name)!.child.kill("SIGKILL");
  await new Promise((r) => setTimeout(r, 1000));
  await startNamedWorker(name);
  await until("the dead worker's build processes to be gone", async () => processesUnder(path.join(cacheOf(name), "work")).length === 0, 15);
  const processesGone = (Date.now() - t0) / 1000;
  const retaken = await until("the job to be queued again", async () => {
    const j = await job(victim.id);
    return j.kiln.attempt >= 2 || j.status === "error" ? j : undefined;
  }, TIMEOUT + HEARTBEAT + 30);
  const released = (Date.now() - t0) / 1000;
  assert.ok(released <= TIMEOUT + 2 * HEARTBEAT + 5, `released ${released} s after the kill (timeout ${TIMEOUT} s + heartbeat ${HEARTBEAT} s)`);
  assert.equal(retaken.kiln.attempt >= 2, true, `queued again, not ended: ${retaken.kiln.error}`);
  const done = await Promise.all(ids.map((id) => ended(id)));
  for (const j of done) assert.equal(j.status, "success", `${j.id}: ${j.kiln.error}`);
  assert.match(await log(victim.id), new RegExp(`worker ${name} (stopped sending heartbeats|stopped or was found dead)[^\\n]*queued again \\(attempt 2 of 3\\)`));
  figures.push(`SIGKILL of a worker mid-build: its processes gone in ${processesGone.toFixed(1)} s, its job released in ${released.toFixed(1)} s, ${done.length} jobs success`);
});

test("a PostgreSQL restart while jobs build: they end success, no job is taken from a live worker", async () => {
  const ids = [await createJob("pg-a", 15), await createJob("pg-b", 15)];
  await until("both jobs building", async () => {
    const js = await Promise.all(ids.map(job));
    return js.every((j) => j.status === "building_image") ? js : undefined;
  }, 180);
  const t0 = Date.now();
  await server("postgres-server.sh", "db", "stop");
  await new Promise((r) => setTimeout(r, 3000));
  await server("postgres-server.sh", "db", "start", { PG_LISTEN: "0.0.0.0", PG_TRUST_NETWORK: net.subnet });
  const outage = (Date.now() - t0) / 1000;
  const done = await Promise.all(ids.map((id) => ended(id)));
  for (const j of done) {
    assert.equal(j.status, "success", `${j.id}: ${j.kiln.error}`);
    assert.equal(j.kiln.attempt, 1, "a live worker's job was not taken from it");
  }
  figures.push(`PostgreSQL restart mid-job (${outage.toFixed(1)} s down): ${done.length} jobs success on their first attempt`);
});

test("an RGW restart while a job uploads: the upload resumes and the job ends success", async () => {
  const ids = [await createJob("s3-a", 1, 96), await createJob("s3-b", 1, 96)];
  const uploading = await until("a job uploading", async () => {
    for (const id of ids) {
      const j = await job(id);
      if (j.status === "packaging_artifacts") return id;
      assert.notEqual(j.status, "error", `${id}: ${j.kiln.error}`);
    }
    return undefined;
  }, 240);
  const t0 = Date.now();
  await server("s3-server.sh", "s3", "stop");
  await new Promise((r) => setTimeout(r, 2000));
  await server("s3-server.sh", "s3", "start", { S3_RGW_BIND: "0.0.0.0" });
  const outage = (Date.now() - t0) / 1000;
  const done = await Promise.all(ids.map((id) => ended(id)));
  for (const j of done) assert.equal(j.status, "success", `${j.id}: ${j.kiln.error}`);
  assert.equal((await job(uploading)).kiln.attempt, 1, "the upload resumed within the job's attempt");
  figures.push(`RGW restart mid-upload (${outage.toFixed(1)} s down): ${done.length} jobs success, the interrupted one on its first attempt`);
});

test("a worker cut off the network past the worker timeout: it stops its job before another worker takes it; reconnected, it writes nothing over the new attempt", async () => {
  const ids = [await createJob("cut-a", 40), await createJob("cut-b", 40)];
  const victim = await jobInScript(ids);
  const cut = victim.kiln.worker!;
  const cutWork = path.join(cacheOf(cut), "work");
  const t0 = Date.now();
  net.cut(cut);
  // Watch both sides: when the cut worker's build processes end, and when another attempt claims the job.
  let cutStopped = 0;
  let retaken = 0;
  await until("the job to be claimed again", async () => {
    if (!cutStopped && processesUnder(cutWork).length === 0) cutStopped = Date.now();
    const j = await job(victim.id);
    if (j.kiln.attempt >= 2 && !retaken) retaken = Date.now();
    return retaken > 0 || j.status === "error";
  }, TIMEOUT + 30);
  await until("the cut worker's processes to be gone", async () => processesUnder(cutWork).length === 0 && (cutStopped ||= Date.now()) > 0, 30);
  await new Promise((r) => setTimeout(r, Math.max(0, (TIMEOUT + 6) * 1000 - (Date.now() - t0))));
  net.reconnect(cut);
  const cutFor = (Date.now() - t0) / 1000;
  assert.ok(retaken > 0, "the job was queued again");
  assert.ok(cutStopped <= retaken, `the cut worker stopped its build (${((cutStopped - t0) / 1000).toFixed(1)} s) before the job was claimed again (${((retaken - t0) / 1000).toFixed(1)} s)`);
  const done = await Promise.all(ids.map((id) => ended(id)));
  for (const j of done) assert.equal(j.status, "success", `${j.id}: ${j.kiln.error}`);
  // Reconnected, the cut worker heartbeats again; give it time to write whatever it held back, then check.
  await new Promise((r) => setTimeout(r, 5000));
  const after = await job(victim.id);
  assert.equal(after.status, "success", "the cut worker wrote nothing over the new attempt");
  assert.equal(after.kiln.attempt, 2);
  // The cut worker says why it stopped (its service log; the job's log gets the line once that
  // worker's buffered lines reach the catalog, which may be later).
  assert.match(workers.get(cut)!.output().stderr, new RegExp(`worker ${cut}: lost the catalog for \\d+ s: stopped job ${victim.id}`));
  figures.push(`network cut of a worker for ${cutFor.toFixed(1)} s: it stopped its build ${((cutStopped - t0) / 1000).toFixed(1)} s into the cut, the job was claimed again at ${((retaken - t0) / 1000).toFixed(1)} s and ended success; ${done.length} jobs success`);
});

test("afterwards: every job ended, no record links an incomplete object, no object lacks a record", async () => {
  const all = await Promise.all(jobs.map(job));
  for (const j of all) {
    assert.ok(j.status === "success" || (j.status === "error" && j.kiln.error), `${j.id} ${j.status} ${j.kiln.error}`);
  }
  const images = (await catalog.list("images")) as ImageRecord[];
  const byId = new Map(images.map((i) => [i.id, i]));
  for (const j of all.filter((x) => x.status === "success")) assert.ok(byId.get(j.resultant_image_id!)?.link, `job ${j.id}'s image is linked`);
  let objects = 0;
  for (const image of images) {
    assert.ok(image.link, `image ${image.id} (${image.name}) has no link: a half-published record`);
    const manifest = JSON.parse(Buffer.concat(await (await store.get("boot-images", `${image.id}/manifest.json`)).toArray()).toString()) as { artifacts: Array<{ md5: string; link: { path: string } }> };
    for (const a of manifest.artifacts) {
      const key = a.link.path.replace("s3://boot-images/", "");
      const md5 = createHash("md5");
      for await (const chunk of await store.get("boot-images", key)) md5.update(chunk as Buffer);
      assert.equal(md5.digest("hex"), a.md5, `${key} is whole`);
      objects++;
    }
  }
  const orphans = (await store.list("boot-images")).filter((o) => !byId.has(o.key.split("/")[0]!));
  assert.deepEqual(orphans.map((o) => o.key), [], "objects without an image record");
  figures.push(`${all.length} jobs, ${all.filter((j) => j.status === "success").length} success, ${images.length} images with ${objects} artifacts checked whole, 0 orphan objects, records lost: ${all.filter((j) => j.status === "success" && !byId.has(j.resultant_image_id!)).length}`);
});
