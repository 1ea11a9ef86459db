/**
 * The multi-node configuration: `kiln serve --no-worker` on PostgreSQL and S3 (Ceph RGW), with
 * build capacity from separate `kiln worker` processes. A create job runs on a worker and its
 * manifest's checksums match the objects in the S3 bucket; a worker killed with SIGKILL
 * mid-build has its job ended `error` with the reason by the service's reaper, and a new worker
 * takes the next job.
 */
import { before, after, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { REPO, runKiln, scratch } from "../helpers/kiln.js";
import { imsJson, waitFor } from "../helpers/ims-cli.js";
import { createToken, startServe, startWorker, type ServiceProcess } from "../helpers/service-process.js";
import { postgresServer, s3Server, type TestServer } from "../helpers/servers.js";
import { openStore } from "../../src/store/open-store.js";
import type { ObjectStore } from "../../src/store/object-store.js";

let pg: TestServer;
let s3: TestServer;
let dir: string;
let cache: string;
let serve: ServiceProcess;
let store: ObjectStore;
let env: Record<string, string>;
const workers: ServiceProcess[] = [];
let recipeId: string;
let keyId: string;

const common = () => ["--database", pg.env.KILN_TEST_DATABASE_URL!, "--store", s3.env.KILN_S3_URL!, "--heartbeat", "1", "--worker-timeout", "5"];
const workerArgs = (name: string) => [...common(), "--data-dir", path.join(dir, name), "--cache-dir", cache, "--verify", "never", "--worker-name", name];

const ims = <T = Record<string, unknown>>(args: string[]): Promise<T> => imsJson<T>(args, env);

before(async () => {
  [pg, s3] = await Promise.all([postgresServer(), s3Server()]);
  ({ dir, cache } = await scratch("kiln-svc-workers-", { sharedLayers: true }));
  const token = await createToken(path.join(dir, "api"), "admin");
  serve = await startServe(["--data-dir", path.join(dir, "api"), "--no-worker", ...common()], s3.env);
  env = { ...s3.env, KILN_URL: serve.url, KILN_TOKEN: token };
  store = await openStore(s3.env.KILN_S3_URL!, { env: s3.env });
  await mkdir(path.join(dir, "recipe"));
  await writeFile(path.join(dir, "recipe", "recipe.yaml"), await readFile(path.join(REPO, "examples/minimal.yaml")));
  await writeFile(path.join(dir, "id.pub"), "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKiln operator@test\n");
  keyId = (await ims<{ id: string }>(["public-keys", "create", "--name", "op", "--public-key", path.join(dir, "id.pub")])).id;
  recipeId = (await ims<{ id: string }>(["recipes", "upload", path.join(dir, "recipe")])).id;
});

after(async () => {
  for (const w of workers) await w.stop().catch(() => {});
  await serve?.stop();
  await store?.close();
  await Promise.all([pg?.stop(), s3?.stop()]);
  // The scratch dir's cache/ links to the shared layers: rm removes the links, not their targets.
  if (dir) await rm(dir, { recursive: true, force: true });
});

test("a worker killed with SIGKILL mid-build: the job ends error with the reason; a new worker builds the next job into S3", async () => {
  const a = await startWorker(workerArgs("worker-a"), s3.env);
  workers.push(a);
  const job = await ims<{ id: string }>(["jobs", "create", "--job-type", "create", "--artifact-id", recipeId, "--public-key-id", keyId, "--image-root-archive-name", "doomed"]);
  await waitFor("building_image", async () => ((await ims<{ status: string }>(["jobs", "describe", job.id])).status === "building_image" ? true : undefined), 300);
  a.child.kill("SIGKILL");
  const t0 = Date.now();
  const failed = await waitFor(
    "the job of the dead worker to end",
    async () => {
      const j = await ims<{ status: string; kiln: { error: string | null } }>(["jobs", "describe", job.id]);
      return j.status === "error" ? j : undefined;
    },
    60,
  );
  const waited = (Date.now() - t0) / 1000;
  assert.match(failed.kiln.error!, /worker worker-a stopped sending heartbeats .* while the job was (building_image|packaging_artifacts); the worker died/);
  assert.ok(waited < 15, `ended ${waited} s after the kill (timeout 5 s + heartbeat 1 s)`);

  const b = await startWorker(workerArgs("worker-b"), s3.env);
  workers.push(b);
  const next = await ims<{ id: string }>(["jobs", "create", "--job-type", "create", "--artifact-id", recipeId, "--public-key-id", keyId, "--image-root-archive-name", "on-s3"]);
  const wait = await runKiln(["ims", "jobs", "wait", next.id, "--no-log", "--json", "--timeout", "1800"], { env });
  assert.equal(wait.code, 0, wait.stderr.slice(-3000));
  const done = JSON.parse(wait.stdout) as { resultant_image_id: string; kiln: { worker: string } };
  assert.equal(done.kiln.worker, "worker-b");

  const image = await ims<{ id: string; link: { path: string } }>(["images", "describe", done.resultant_image_id]);
  const body = async (key: string) => Buffer.concat(await (await store.get("boot-images", key)).toArray());
  const manifest = JSON.parse((await body(`${image.id}/manifest.json`)).toString()) as { artifacts: Array<{ type: string; md5: string; link: { path: string; etag: string } }> };
  assert.ok(manifest.artifacts.some((x) => x.type === "application/vnd.cray.image.rootfs.squashfs"));
  for (const x of manifest.artifacts) {
    const key = x.link.path.replace("s3://boot-images/", "");
    assert.equal(createHash("md5").update(await body(key)).digest("hex"), x.md5, key);
    const info = await store.head("boot-images", key);
    assert.equal(info.metadata.md5sum, x.md5, `${key} md5sum metadata`);
    assert.equal(info.etag, x.link.etag, `${key} etag`);
  }
});
