/**
 * End to end, as an operator would: `kiln serve` with no setup, `kiln token create`, then only
 * `kiln ims …`: register a key, upload a recipe folder (examples/minimal.yaml), start a create job,
 * follow it with its log, check the image's manifest against the objects in the store, download
 * the image. Then kill -9 the service mid-build: once restarted, the job ends `error` with the
 * reason, and the restarted worker takes new jobs. The service is also a MAAS boot source
 * (--streams open, with bootloaders from a real `kiln streams bootloaders` folder): the new image
 * is a candidate, not in the stable tree, until `kiln ims images promote`; then `kiln streams
 * check URL --keyring` accepts the running service's tree. The image carries its SBOMs, provenance
 * and SHA256SUMS signed with the service's key, which `kiln attest verify IMAGE_ID` checks. Builds share layers with the other test files
 * of the run and skip boot verification (--verify never), which build.test.ts covers.
 */
import { before, after, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdir, open, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { REPO, runKiln, scratch } from "../helpers/kiln.js";
import { imsJson, waitFor } from "../helpers/ims-cli.js";
import { createToken, startServe, type ServiceProcess } from "../helpers/service-process.js";
import { throwawayKey } from "../helpers/streams.js";

let dir: string;
let cache: string;
let dataDir: string;
let serve: ServiceProcess;
let env: Record<string, string>;
let keyId: string;
let recipeId: string;
let imageId: string;
let streamKey: string;

// One --worker-name for every start: the restart after kill -9 is the same worker name in a new
// process, which must not keep the killed process's job alive (worker instances).
const serveArgs = () => [
  "--data-dir", dataDir, "--cache-dir", cache, "--verify", "never", "--heartbeat", "1", "--worker-timeout", "5", "--worker-name", "e2e-worker",
  "--streams", "open", "--streams-labels", "stable", "--streams-sign-key", streamKey, "--streams-bootloaders", path.join(dir, "loaders"),
];

async function kiln(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return runKiln(args, { env });
}

const ims = <T = Record<string, unknown>>(args: string[]): Promise<T> => imsJson<T>(args, env);

async function md5(file: string): Promise<string> {
  return createHash("md5").update(await readFile(file)).digest("hex");
}

before(async () => {
  ({ dir, cache } = await scratch("kiln-svc-e2e-", { sharedLayers: true }));
  dataDir = path.join(dir, "data");
  streamKey = (await throwawayKey(dir, "Kiln Service Stream")).secret;
  // Real bootloaders from Debian's archive (about 20 s), kept in the folder a timer would refresh.
  const loaders = await runKiln(["streams", "bootloaders", "--to", path.join(dir, "loaders"), "--label", "stable", "--cache-dir", cache]);
  assert.equal(loaders.code, 0, loaders.stderr);
  const token = await createToken(dataDir, "admin");
  serve = await startServe(serveArgs());
  env = { KILN_URL: serve.url, KILN_TOKEN: token };
  await mkdir(path.join(dir, "recipe"));
  await writeFile(path.join(dir, "recipe", "recipe.yaml"), await readFile(path.join(REPO, "examples/minimal.yaml")));
  await writeFile(path.join(dir, "id.pub"), "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKiln operator@test\n");
});

after(async () => {
  await serve?.stop();
  // The scratch dir's cache/ links to the shared layers: rm removes the links, not their targets.
  if (dir) await rm(dir, { recursive: true, force: true });
});

test("an operator registers a key and a recipe folder with kiln ims", async () => {
  keyId = (await ims<{ id: string }>(["public-keys", "create", "--name", "operator", "--public-key", path.join(dir, "id.pub")])).id;
  const recipe = await ims<{ id: string; recipe_type: string; linux_distribution: string; link: { path: string } }>(["recipes", "upload", path.join(dir, "recipe")]);
  recipeId = recipe.id;
  assert.equal(recipe.recipe_type, "kiln");
  assert.equal(recipe.linux_distribution, "debian12", "from base.debian: bookworm");
  assert.match(recipe.link.path, new RegExp(`^s3://ims/recipes/${recipeId}/[0-9a-f-]{36}/recipe\\.tar\\.gz$`));
  const table = await kiln(["ims", "recipes", "list"]);
  assert.match(table.stdout, /^ID +NAME +RECIPE_TYPE/);
  assert.match(table.stdout, new RegExp(`${recipeId} +bookworm-minimal +kiln +debian12`));
});

test("a create job builds the recipe through the queue into an image whose manifest matches the bucket", async () => {
  const job = await ims<{ id: string; status: string }>(["jobs", "create", "--job-type", "create", "--artifact-id", recipeId, "--public-key-id", keyId, "--image-root-archive-name", "minimal"]);
  assert.equal(job.status, "creating");
  const wait = await kiln(["ims", "jobs", "wait", job.id, "--json", "--timeout", "1800"]);
  assert.equal(wait.code, 0, `job failed:\n${wait.stderr.slice(-3000)}\n${wait.stdout}`);
  assert.match(wait.stderr, /status fetching_recipe[\s\S]*status waiting_for_repos[\s\S]*status building_image[\s\S]*── bootstrap[\s\S]*status packaging_artifacts[\s\S]*status success/, "the log streamed while it ran");

  const done = JSON.parse(wait.stdout) as { status: string; resultant_image_id: string; kiln: { stages: Array<{ name: string }>; status_seconds: Record<string, number>; worker: string; error: null } };
  assert.equal(done.status, "success");
  assert.equal(done.kiln.error, null);
  assert.ok(done.kiln.stages.some((s) => s.name === "squashfs"));
  for (const s of ["creating", "fetching_recipe", "waiting_for_repos", "building_image", "packaging_artifacts"]) assert.ok(s in done.kiln.status_seconds, s);

  const image = await ims<{ id: string; name: string; link: { path: string; etag: string }; arch: string; kiln: { label: string } }>(["images", "describe", done.resultant_image_id]);
  imageId = image.id;
  assert.equal(image.kiln.label, "candidate", "a job's image enters the MAAS boot source as a candidate");
  assert.equal(image.name, "minimal");
  assert.equal(image.arch, "x86_64");
  assert.equal(image.link.path, `s3://boot-images/${image.id}/manifest.json`);
  const objects = path.join(dataDir, "objects", "boot-images", image.id);
  const manifest = JSON.parse(await readFile(path.join(objects, "manifest.json"), "utf8")) as { version: string; artifacts: Array<{ type: string; md5: string; link: { path: string; type: string } }> };
  assert.equal(manifest.version, "1.0");
  const types = manifest.artifacts.map((a) => a.type);
  for (const t of ["application/vnd.cray.image.rootfs.squashfs", "application/vnd.cray.image.kernel", "application/vnd.cray.image.initrd"]) assert.ok(types.includes(t), t);
  for (const a of manifest.artifacts) {
    assert.equal(a.link.type, "s3");
    const key = a.link.path.replace("s3://boot-images/", "");
    assert.equal(await md5(path.join(dataDir, "objects", "boot-images", key)), a.md5, `${key} in the bucket has the manifest's md5`);
  }
  assert.deepEqual(manifest.artifacts.map((a) => a.link.path.split("/").pop()).slice(0, 3), ["rootfs", "kernel", "initrd"]);

  const out = path.join(dir, "download");
  const dl = await kiln(["ims", "images", "download", image.id, "--out", out]);
  assert.equal(dl.code, 0, dl.stderr);
  assert.match(dl.stdout, /rootfs .* ok/);
  assert.equal(await md5(path.join(out, "rootfs")), manifest.artifacts.find((a) => a.type.endsWith("squashfs"))!.md5);

  const log = await kiln(["ims", "jobs", "log", job.id, "--no-follow"]);
  assert.match(log.stdout, /uploaded .*\/rootfs: \d+ bytes, md5 [0-9a-f]{32}/);
});

test("the image carries its SBOMs, provenance, kiln.lock and SHA256SUMS signed with the service's key; kiln attest verify IMAGE_ID checks them and names a changed object", async () => {
  assert.ok(imageId, "the create job's image");
  const manifest = JSON.parse(await readFile(path.join(dataDir, "objects", "boot-images", imageId, "manifest.json"), "utf8")) as { artifacts: Array<{ type: string; link: { path: string } }> };
  const keyOf = (type: string) => manifest.artifacts.find((a) => a.type === type)?.link.path.replace(`s3://boot-images/${imageId}/`, "");
  const attestations = [
    ["application/spdx+json", "sbom.spdx.json"],
    ["application/vnd.cyclonedx+json", "sbom.cdx.json"],
    ["application/vnd.in-toto+json", "provenance.json"],
    ["text/plain", "SHA256SUMS"],
    ["application/pgp-signature", "SHA256SUMS.gpg"],
    ["application/vnd.kiln.lock+json", "kiln.lock"],
  ] as const;
  for (const [type, key] of attestations) assert.equal(keyOf(type), key, `${type} is an artifact of the image`);
  const spdx = JSON.parse(await readFile(path.join(dataDir, "objects", "boot-images", imageId, "sbom.spdx.json"), "utf8")) as { spdxVersion: string; packages: unknown[] };
  assert.equal(spdx.spdxVersion, "SPDX-2.3");
  assert.ok(spdx.packages.length > 50, "the root's Debian packages");
  const prov = JSON.parse(await readFile(path.join(dataDir, "objects", "boot-images", imageId, "provenance.json"), "utf8")) as { predicate: { runDetails: { builder: { id: string } } } };
  assert.equal(prov.predicate.runDetails.builder.id, "urn:kiln:builder:service");
  const lock = JSON.parse(await readFile(path.join(dataDir, "objects", "boot-images", imageId, "kiln.lock"), "utf8")) as { kilnLock: number; root: Array<{ name: string; sha256: string }> };
  assert.equal(lock.kilnLock, 1);
  assert.ok(lock.root.some((p) => p.name === "systemd" && /^[0-9a-f]{64}$/.test(p.sha256)), "the image record's lock names the root's packages with their .deb digests");

  const described = await kiln(["ims", "images", "describe", imageId]);
  assert.equal(described.code, 0, described.stderr);
  for (const [type, key] of attestations) assert.match(described.stdout, new RegExp(`${type.replaceAll(".", "\\.").replaceAll("+", "\\+")} +s3://boot-images/${imageId}/${key.replaceAll(".", "\\.")}$`, "m"), key);

  // The jobs sign with the streams key (--sign-key's default in kiln serve): MAAS' keyring checks the images too.
  const ring = path.join(dir, "service-keyring.gpg");
  await writeFile(ring, Buffer.from(await (await fetch(`${serve.url}/streams/keyring.gpg`)).arrayBuffer()));
  const ok = await kiln(["attest", "verify", imageId, "--keyring", ring]);
  assert.equal(ok.code, 0, ok.stdout + ok.stderr);
  assert.match(ok.stdout, /: ok \(\d+ checks, signature good\)/);

  const rootfs = path.join(dataDir, "objects", "boot-images", imageId, "rootfs");
  const fd = await open(rootfs, "r+");
  try {
    const b = Buffer.alloc(1);
    await fd.read(b, 0, 1, 4096);
    await fd.write(Buffer.from([b[0]! ^ 0xff]), 0, 1, 4096);
    const bad = await kiln(["attest", "verify", imageId, "--keyring", ring]);
    assert.equal(bad.code, 1, bad.stdout + bad.stderr);
    assert.match(bad.stdout, new RegExp(`^FAIL squashfs \\(s3://boot-images/${imageId}/rootfs\\): checksum mismatch`, "m"));
    await fd.write(b, 0, 1, 4096);
  } finally {
    await fd.close();
  }
});

test("the service is a MAAS boot source: the new image is a candidate until promoted, then kiln streams check --keyring accepts the running tree", async () => {
  assert.ok(imageId, "the create job's image");
  const index = async () => (await (await fetch(`${serve.url}/streams/v1/index.json`)).json()) as { index: Record<string, { products: string[] }> };
  const before = await index();
  assert.deepEqual(Object.keys(before.index), ["org.kiln:stable:1:bootloader-download"], "only the bootloaders: a candidate is not published");
  const promoted = await kiln(["ims", "images", "promote", imageId, "--to", "stable"]);
  assert.equal(promoted.code, 0, promoted.stderr);
  const after = await index();
  assert.deepEqual(after.index["org.kiln:stable:v3:download"]?.products, ["org.kiln.stable:v3:boot:minimal:amd64:generic"]);
  const products = (await (await fetch(`${serve.url}/streams/v1/org.kiln:stable:v3:download.json`)).json()) as { products: Record<string, { versions: Record<string, { items: Record<string, { path: string }> }> }> };
  const items = Object.values(products.products["org.kiln.stable:v3:boot:minimal:amd64:generic"]!.versions)[0]!.items;
  for (const ftype of ["sbom.spdx.json", "sbom.cdx.json", "provenance.json", "sha256sums", "sha256sums.gpg"]) assert.ok(items[ftype], `the version lists ${ftype} as an extra item`);
  const ring = path.join(dir, "keyring.gpg");
  await writeFile(ring, Buffer.from(await (await fetch(`${serve.url}/streams/keyring.gpg`)).arrayBuffer()));
  const check = await kiln(["streams", "check", `${serve.url}/streams/v1/index.sjson`, "--keyring", ring, "--json"]);
  assert.equal(check.code, 0, `${check.stdout}\n${check.stderr}`);
  const report = JSON.parse(check.stdout) as { violations: unknown[]; signaturesChecked: number; files: number };
  assert.deepEqual(report.violations, []);
  assert.equal(report.signaturesChecked, 3, "index, images and bootloaders, each checked with the served key");
  assert.ok(report.files >= 11, `squashfs, its package list, kernel, initrd, boot-params, the 5 attestations and the bootloader tarballs were fetched and hashed (${report.files})`);
});

test("a kiwi-ng recipe is a valid record, but its create job fails saying why", async () => {
  const rec = await ims<{ id: string }>(["recipes", "create", "--name", "sles", "--recipe-type", "kiwi-ng", "--linux-distribution", "sles15"]);
  await writeFile(path.join(dir, "config.xml"), "<image schemaversion='7.4' name='x'/>\n");
  const { execFileSync } = await import("node:child_process");
  execFileSync("tar", ["-czf", path.join(dir, "kiwi.tar.gz"), "-C", dir, "config.xml"]);
  const ok = await fetch(`${serve.url}/v3/recipes/${rec.id}/archive`, { method: "PUT", headers: { authorization: `Bearer ${env.KILN_TOKEN}`, "content-type": "application/gzip" }, body: await readFile(path.join(dir, "kiwi.tar.gz")) });
  assert.equal(ok.status, 200);
  const job = await ims<{ id: string }>(["jobs", "create", "--job-type", "create", "--artifact-id", rec.id, "--public-key-id", keyId, "--image-root-archive-name", "sles"]);
  const wait = await kiln(["ims", "jobs", "wait", job.id, "--no-log", "--timeout", "120"]);
  assert.equal(wait.code, 1);
  assert.match(wait.stderr, /kiwi-ng recipe; this Kiln builds only recipe_type "kiln"/);
});

test("kill -9 mid-build: after a restart under the same --worker-name the job ends error with the reason at once, and the new worker takes new jobs", async () => {
  // The minimal recipe is all cached by now and would race through building_image between two
  // polls; a script that holds the build keeps the job there until the kill.
  const held = path.join(dir, "held");
  await mkdir(held);
  const minimal = await readFile(path.join(REPO, "examples/minimal.yaml"), "utf8");
  await writeFile(path.join(held, "recipe.yaml"), minimal.replace("verify: boot", "scripts:\n  - name: hold\n    run: sleep 900\nverify: boot"));
  const heldRecipe = await ims<{ id: string }>(["recipes", "upload", held]);
  const job = await ims<{ id: string }>(["jobs", "create", "--job-type", "create", "--artifact-id", heldRecipe.id, "--public-key-id", keyId, "--image-root-archive-name", "doomed"]);
  await waitFor(
    "the held job to reach its script",
    async () => {
      const j = await ims<{ status: string }>(["jobs", "describe", job.id]);
      assert.ok(!["success", "error"].includes(j.status), `the held job ended ${j.status} before the kill`);
      const log = await kiln(["ims", "jobs", "log", job.id, "--no-follow"]);
      return j.status === "building_image" && /── scripts/.test(log.stdout) ? true : undefined;
    },
    300,
  );
  const killedPid = serve.child.pid!;
  serve.child.kill("SIGKILL");
  await new Promise((r) => serve.child.once("close", r));

  serve = await startServe(serveArgs());
  env.KILN_URL = serve.url;
  const t0 = Date.now();
  const failed = await waitFor(
    "the orphaned job to end",
    async () => {
      const j = await ims<{ status: string; kiln: { error: string | null } }>(["jobs", "describe", job.id]);
      return j.status === "error" ? j : undefined;
    },
    60,
  );
  // The new process of the same name found the killed one's pid gone on this machine: the job
  // did not wait for --worker-timeout (it used to stay building_image while the new process's
  // heartbeats, by name, kept the killed one "alive").
  assert.match(failed.kiln.error!, /worker e2e-worker stopped or was found dead \(process [0-9a-f-]{36}, at .*\) while the job was (building_image|packaging_artifacts); the worker died/);
  assert.ok(Date.now() - t0 < 30_000, "bounded by --worker-timeout and a heartbeat");
  const rows = await (await fetch(`${serve.url}/v3/workers`, { headers: { authorization: `Bearer ${env.KILN_TOKEN}` } })).json() as Array<{ name: string; pid: number; alive: boolean; stopped: string | null }>;
  const mine = rows.filter((w) => w.name === "e2e-worker");
  assert.deepEqual(mine.filter((w) => w.alive).map((w) => w.pid), [serve.child.pid], "the live row is the new process's");
  assert.ok(mine.some((w) => w.pid === killedPid && !w.alive && w.stopped !== null), "the killed process's row says it is gone");

  const next = await ims<{ id: string }>(["jobs", "create", "--job-type", "create", "--artifact-id", recipeId, "--public-key-id", keyId, "--image-root-archive-name", "after-restart"]);
  const wait = await kiln(["ims", "jobs", "wait", next.id, "--no-log", "--json", "--timeout", "1800"]);
  assert.equal(wait.code, 0, wait.stderr.slice(-3000));
  assert.equal((JSON.parse(wait.stdout) as { status: string }).status, "success");
  // The next build on this machine swept the dead build: its script's process is gone.
  const { spawnSync } = await import("node:child_process");
  assert.equal(spawnSync("pgrep", ["-fx", "sleep 900"]).status, 1, "the killed job's script still runs");
});
