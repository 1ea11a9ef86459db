/**
 * Customize jobs and debug shells end to end, as an operator works: a real `kiln serve`, `kiln ims`
 * for the API, and the real OpenSSH client (ssh, scp) for the sessions.
 *
 *  - a create job makes the source image (the service's site CA lands in its trust store);
 *  - not jailed: a change under /mnt/image, ended through the end-session API → a new image;
 *  - `failed` → error, no image; a create job with enable_debug whose script fails → a `debug`
 *    shell; the operator fixes the root, `complete` → the stage runs again and the job succeeds;
 *  - jailed, with the service verifying always: apt installs a package, scp copies a file in,
 *    `touch /tmp/complete` → a new image that has both, a package diff saying so, and boots;
 *  - kill -9 of the service during a session → the job ends error, no mount or process is left;
 *    a session nobody ends → error after --session-timeout.
 * The source image is checked unchanged after every customize job. Builds share layers with the
 * other test files of the run.
 */
import { before, after, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { REPO, runKiln, scratch } from "../helpers/kiln.js";
import { imsJson, waitFor } from "../helpers/ims-cli.js";
import { mountsUnder, processesUnder } from "../helpers/host.js";
import { createToken, startServe, type ServiceProcess } from "../helpers/service-process.js";

const SSH_OPTS = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10"];

let dir: string;
let cache: string;
let dataDir: string;
let serve: ServiceProcess;
let env: Record<string, string>;
let key: string;
let keyId: string;
let caPem: string;
let sourceImage: string;
let sourceRootfsMd5: string;

type Job = { id: string; status: string; resultant_image_id: string | null; ssh_containers: Array<{ name: string; jail: boolean; status: string; connection_info: Record<string, { host: string; port: number }> }>; kiln: { error: string | null; debug_stage?: string | null; ssh_host_key?: string | null } };
type Image = { id: string; name: string; link: { path: string } | null; kiln?: { label?: string; source_image_id: string | null; package_diff: { added: Array<{ name: string }>; removed: unknown[]; changed: unknown[] } | null } };

const serveArgs = (...extra: string[]) => ["--data-dir", dataDir, "--cache-dir", cache, "--heartbeat", "1", "--worker-timeout", "5", "--ssh-listen", "127.0.0.1", "--ssh-host", "127.0.0.1", "--site-ca", caPem, ...extra];

async function restart(...extra: string[]): Promise<void> {
  await serve?.stop();
  serve = await startServe(serveArgs(...extra));
  env.KILN_URL = serve.url;
}

const ims = <T = Record<string, unknown>>(args: string[]): Promise<T> => imsJson<T>(args, env);

/** Waits until the job is waiting_on_user; fails at once if it ends first. */
async function waitForSession(id: string, seconds = 300): Promise<Job> {
  return waitFor(
    `job ${id} to wait on the user`,
    async () => {
      const j = await ims<Job>(["jobs", "describe", id]);
      assert.ok(!["success", "error"].includes(j.status), `job ${id} ended ${j.status} before its session: ${j.kiln.error}`);
      return j.status === "waiting_on_user" && j.ssh_containers[0]?.connection_info.customer_access ? j : undefined;
    },
    seconds,
  );
}

async function waitForEnd(id: string, seconds = 1800): Promise<Job> {
  const r = await runKiln(["ims", "jobs", "wait", id, "--no-log", "--json", "--timeout", String(seconds)], { env });
  if (r.code === 0) return JSON.parse(r.stdout) as Job;
  return ims<Job>(["jobs", "describe", id]);
}

function run(cmd: string, args: string[], timeoutMs = 300_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

const port = (j: Job) => String(j.ssh_containers[0]!.connection_info.customer_access!.port);
const ssh = (j: Job, command: string, opts: { key?: string } = {}) => run("ssh", [...SSH_OPTS, "-p", port(j), "-i", opts.key ?? key, "root@127.0.0.1", command]);

/** The new image's rootfs, downloaded and checked against its manifest by `kiln ims images download`. */
async function rootfsOf(imageId: string): Promise<string> {
  const out = path.join(dir, `download-${imageId}`);
  const r = await runKiln(["ims", "images", "download", imageId, "--out", out], { env });
  assert.equal(r.code, 0, r.stderr);
  return path.join(out, "rootfs");
}

function catInSquashfs(squashfs: string, file: string): string | undefined {
  const r = spawnSync("unsquashfs", ["-cat", squashfs, file], { encoding: "utf8" });
  return r.status === 0 ? r.stdout : undefined;
}

async function md5(file: string): Promise<string> {
  return createHash("md5").update(await readFile(file)).digest("hex");
}

async function assertSourceUnchanged(): Promise<void> {
  const image = await ims<Image>(["images", "describe", sourceImage]);
  assert.equal(image.name, "source");
  assert.equal(await md5(await rootfsOf(sourceImage)), sourceRootfsMd5, "the source image's rootfs is unchanged");
}

async function customize(name: string, jail: boolean): Promise<Job> {
  const r = await fetch(`${serve.url}/v3/jobs`, {
    method: "POST",
    headers: { authorization: `Bearer ${env.KILN_TOKEN}`, "content-type": "application/json" },
    body: JSON.stringify({ job_type: "customize", artifact_id: sourceImage, public_key_id: keyId, image_root_archive_name: name, ssh_containers: [{ name: "customize", jail }] }),
  });
  assert.equal(r.status, 201, await r.clone().text());
  return (await r.json()) as Job;
}

async function upload(name: string, recipe: string): Promise<string> {
  const folder = path.join(dir, name);
  await mkdir(folder, { recursive: true });
  await writeFile(path.join(folder, "recipe.yaml"), recipe);
  return (await ims<{ id: string }>(["recipes", "upload", folder])).id;
}

const minimal = async () => (await readFile(path.join(REPO, "examples/minimal.yaml"), "utf8")).replace("verify: boot", "verify: none");

before(async () => {
  ({ dir, cache } = await scratch("kiln-customize-job-", { sharedLayers: true }));
  dataDir = path.join(dir, "data");
  key = path.join(dir, "id_ed25519");
  execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "operator", "-f", key]);
  caPem = path.join(dir, "site-ca.pem");
  execFileSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", path.join(dir, "site-ca.key"), "-out", caPem, "-days", "2", "-subj", "/CN=Kiln test site CA"], { stdio: "ignore" });
  const token = await createToken(dataDir, "admin");
  env = { KILN_TOKEN: token };
  await restart("--verify", "never");
  keyId = (await ims<{ id: string }>(["public-keys", "create", "--name", "operator", "--public-key", `${key}.pub`])).id;
});

after(async () => {
  await serve?.stop();
  for (const m of (await mountsUnder(dir)).reverse()) spawnSync("umount", ["-l", m]);
  if (dir) await rm(dir, { recursive: true, force: true });
});

test("a create job makes the source image; the site CA is in its trust store", async () => {
  const recipe = await upload("source-recipe", (await minimal()).replace("packages: [systemd, systemd-sysv, udev]", "packages: [systemd, systemd-sysv, udev, ca-certificates]"));
  const job = await ims<{ id: string }>(["jobs", "create", "--job-type", "create", "--artifact-id", recipe, "--public-key-id", keyId, "--image-root-archive-name", "source"]);
  const done = await waitForEnd(job.id);
  assert.equal(done.status, "success", done.kiln.error ?? "");
  sourceImage = done.resultant_image_id!;
  const rootfs = await rootfsOf(sourceImage);
  sourceRootfsMd5 = await md5(rootfs);
  const pem = await readFile(caPem, "utf8");
  const body = pem.split("\n")[1]!;
  assert.equal(catInSquashfs(rootfs, "/usr/local/share/ca-certificates/kiln-site/site-ca.crt"), pem);
  assert.ok(catInSquashfs(rootfs, "/etc/ssl/certs/ca-certificates.crt")?.includes(body), "update-ca-certificates put the site CA in the bundle");
  const image = await ims<Image & { kiln: { flavors: Array<{ flavor: string; kpackage: string }> } }>(["images", "describe", sourceImage]);
  assert.deepEqual(image.kiln.flavors.map((f) => [f.flavor, f.kpackage]), [["generic", "linux-image-amd64"]]);
});

test("not jailed: the image at /mnt/image; ended through the API; a new image with the change", async () => {
  const t0 = Date.now();
  const job = await customize("plain", false);
  const open = await waitForSession(job.id);
  process.stderr.write(`# customize: job created → session open in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
  assert.equal(open.ssh_containers[0]!.status, "pending");
  assert.ok(open.ssh_containers[0]!.connection_info["cluster.local"]?.port, "a cluster-local endpoint is advertised");
  assert.match(open.kiln.ssh_host_key ?? "", /^SHA256:/);

  const r = await ssh(open, "test -f /mnt/image/etc/os-release && echo not-jailed > /mnt/image/etc/kiln-plain && hostname");
  assert.equal(r.code, 0, r.stderr);
  // The shell is in the build environment, not on the worker: the service's tokens are not there.
  const host = await ssh(open, `cat ${path.join(dataDir, "tokens.json")}; ls /proc | grep -cx '[0-9]*'; command -v mount less`);
  assert.match(host.stderr, /tokens\.json: No such file or directory/);
  assert.ok(Number(host.stdout.split("\n")[0]) < 10, `the session sees ${host.stdout.split("\n")[0]} processes`);
  const during = await ims<Job>(["jobs", "describe", job.id]);
  assert.equal(during.ssh_containers[0]!.status, "established");

  const end = await runKiln(["ims", "jobs", "end-session", job.id], { env });
  assert.equal(end.code, 0, end.stderr);
  const done = await waitForEnd(job.id);
  assert.equal(done.status, "success", done.kiln.error ?? "");
  assert.equal(done.ssh_containers[0]!.status, "complete");
  const rootfs = await rootfsOf(done.resultant_image_id!);
  assert.equal(catInSquashfs(rootfs, "/etc/kiln-plain"), "not-jailed\n");
  assert.equal(catInSquashfs(rootfs, "/complete"), undefined, "no marker in the image");
  const image = await ims<Image>(["images", "describe", done.resultant_image_id!]);
  assert.equal(image.kiln?.source_image_id, sourceImage);
  assert.deepEqual(image.kiln?.package_diff, { added: [], removed: [], changed: [] });
  assert.equal(image.kiln?.label, "candidate", "a customized image enters the MAAS boot source as a candidate");
  const uploaded = JSON.parse(await readFile(path.join(dataDir, "objects", "boot-images", image.id, "manifest.json"), "utf8")) as { artifacts: Array<{ type: string }> };
  assert.ok(uploaded.artifacts.some((a) => a.type === "text/tab-separated-values"), "its package list is stored for the stream tree");

  // The customized image is attested like a build: SBOMs of its new root, provenance naming the source, SHA256SUMS.
  for (const t of ["application/spdx+json", "application/vnd.cyclonedx+json", "application/vnd.in-toto+json", "text/plain"]) assert.ok(uploaded.artifacts.some((a) => a.type === t), t);
  const objects = path.join(dataDir, "objects", "boot-images", image.id);
  const spdx = JSON.parse(await readFile(path.join(objects, "sbom.spdx.json"), "utf8")) as { packages: Array<{ name: string; versionInfo?: string; externalRefs?: Array<{ referenceLocator: string }> }> };
  assert.ok(spdx.packages.some((p) => p.name === "ca-certificates"), "the SBOM lists the root's packages");
  // The flavor was carried over (the session touched no initramfs input): its kernel packages come
  // from the source image's SBOM, with the purl the source's SBOM gives them.
  type Cdx = { components: Array<{ name: string; purl?: string; properties?: Array<{ name: string; value: string }> }> };
  const cdx = JSON.parse(await readFile(path.join(objects, "sbom.cdx.json"), "utf8")) as Cdx;
  const sourceCdx = JSON.parse(await readFile(path.join(dataDir, "objects", "boot-images", sourceImage, "sbom.cdx.json"), "utf8")) as Cdx;
  const kernelPkg = cdx.components.find((c) => c.name === "linux-image-amd64");
  assert.ok(kernelPkg, "the CycloneDX SBOM lists the flavor's kernel package");
  assert.match(kernelPkg.purl ?? "", /^pkg:deb\/debian\/linux-image-amd64@[^?]+\?arch=amd64&distro=debian-12$/);
  assert.equal(kernelPkg.purl, sourceCdx.components.find((c) => c.name === "linux-image-amd64")?.purl, "the source's kernel package");
  assert.ok(kernelPkg.properties?.some((p) => p.name === "kiln:layer" && p.value === "flavor:generic"), "as the flavor's");
  assert.equal(spdx.packages.find((p) => p.name === "linux-image-amd64")?.externalRefs?.[0]?.referenceLocator, kernelPkg.purl, "the SPDX SBOM lists it with its purl");
  const prov = JSON.parse(await readFile(path.join(objects, "provenance.json"), "utf8")) as { predicate: { buildDefinition: { buildType: string; externalParameters: { sourceImage?: { id: string }; recipe?: { digest: { sha256: string } } }; resolvedDependencies: Array<{ name: string; uri: string; digest: { sha256: string } }> } } };
  const def = prov.predicate.buildDefinition;
  assert.equal(def.buildType, "urn:kiln:build-type:customize:v1");
  assert.equal(def.externalParameters.sourceImage?.id, sourceImage);
  const source = await ims<Image & { kiln: { recipe: { sha256: string } } }>(["images", "describe", sourceImage]);
  assert.match(source.kiln.recipe.sha256, /^[0-9a-f]{64}$/, "the source record names its recipe");
  assert.equal(def.externalParameters.recipe?.digest.sha256, source.kiln.recipe.sha256, "the recipe the source was built from");
  const dep = def.resolvedDependencies.find((d) => d.name === "source-image");
  assert.equal(dep?.uri, `s3://boot-images/${sourceImage}/rootfs`);
  assert.equal(dep?.digest.sha256, createHash("sha256").update(await readFile(await rootfsOf(sourceImage))).digest("hex"), "the source's rootfs, by its digest");
  const verified = await runKiln(["attest", "verify", image.id], { env });
  assert.equal(verified.code, 0, verified.stdout + verified.stderr);
  assert.match(verified.stdout, /: ok \(\d+ checks, not signed\)/);
  await assertSourceUnchanged();
});

test("the failed marker ends the job error with no new image; a wrong key is refused", async () => {
  const images = (await ims<Image[]>(["images", "list"])).length;
  const job = await customize("never", true);
  const open = await waitForSession(job.id);
  const stranger = path.join(dir, "stranger");
  execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", stranger]);
  const refused = await ssh(open, "true", { key: stranger });
  assert.equal(refused.code, 255, "another key is refused");
  const r = await ssh(open, "touch /tmp/failed");
  assert.equal(r.code, 0, r.stderr);
  const done = await waitForEnd(job.id, 120);
  assert.equal(done.status, "error");
  assert.match(done.kiln.error!, /failed.*no image was made/);
  assert.equal((await ims<Image[]>(["images", "list"])).length, images);
  const log = await runKiln(["ims", "jobs", "log", job.id, "--no-follow"], { env });
  assert.match(log.stdout, /refused/, "the refused key is in the job log");
});

test("enable_debug: a failing script opens a debug shell; the operator's fix and complete let the build finish", async () => {
  const recipe = await upload(
    "debug-recipe",
    (await minimal()).replace("verify: none", "scripts:\n  - name: needs-fix\n    run: test -f /etc/fixed-by-operator || { echo 'the operator has not fixed it yet' >&2; exit 3; }\nverify: none"),
  );
  const r = await fetch(`${serve.url}/v3/jobs`, {
    method: "POST",
    headers: { authorization: `Bearer ${env.KILN_TOKEN}`, "content-type": "application/json" },
    body: JSON.stringify({ job_type: "create", artifact_id: recipe, public_key_id: keyId, image_root_archive_name: "debugged", enable_debug: true }),
  });
  assert.equal(r.status, 201);
  const job = (await r.json()) as Job;
  assert.equal(job.ssh_containers[0]!.name, "debug");
  const open = await waitForSession(job.id, 900);
  assert.equal(open.kiln.debug_stage, "scripts");
  const fix = await ssh(open, "touch /mnt/image/etc/fixed-by-operator && touch /mnt/image/complete");
  assert.equal(fix.code, 0, fix.stderr);
  const done = await waitForEnd(job.id);
  assert.equal(done.status, "success", done.kiln.error ?? "");
  const rootfs = await rootfsOf(done.resultant_image_id!);
  assert.equal(catInSquashfs(rootfs, "/etc/fixed-by-operator"), "");
  const log = await runKiln(["ims", "jobs", "log", job.id, "--no-follow"], { env });
  assert.match(log.stdout, /the operator has not fixed it yet[\s\S]*debug shell[\s\S]*running again/);
  // The hand-fixed layer is not the product of its key: the next build of the recipe fails again.
  const again = await ims<{ id: string }>(["jobs", "create", "--job-type", "create", "--artifact-id", recipe, "--public-key-id", keyId, "--image-root-archive-name", "again"]);
  const failed = await waitForEnd(again.id, 900);
  assert.equal(failed.status, "error");
  assert.match(failed.kiln.error!, /stage scripts/);
});

test("jailed: apt and scp in the jail, touch /tmp/complete → a new image with the package diff, boot-verified", async () => {
  await restart("--verify", "always");
  const job = await customize("jailed", true);
  const open = await waitForSession(job.id);
  await writeFile(path.join(dir, "copied.txt"), "copied in with scp\n");
  const scp = await run("scp", [...SSH_OPTS, "-P", port(open), "-i", key, path.join(dir, "copied.txt"), "root@127.0.0.1:/root/copied.txt"]);
  assert.equal(scp.code, 0, scp.stderr);
  const apt = await ssh(open, "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends hello >/dev/null && hello");
  assert.equal(apt.code, 0, apt.stderr);
  assert.match(apt.stdout, /Hello, world!/);
  const done1 = await ssh(open, "touch /tmp/complete");
  assert.equal(done1.code, 0, done1.stderr);

  const done = await waitForEnd(job.id);
  assert.equal(done.status, "success", done.kiln.error ?? "");
  const rootfs = await rootfsOf(done.resultant_image_id!);
  assert.equal(catInSquashfs(rootfs, "/root/copied.txt"), "copied in with scp\n");
  assert.ok(catInSquashfs(rootfs, "/usr/bin/hello") !== undefined, "hello is installed in the new image");
  assert.equal(catInSquashfs(rootfs, "/tmp/complete"), undefined);
  const log = await runKiln(["ims", "jobs", "log", job.id, "--no-follow"], { env });
  assert.match(log.stdout, /verify: generic[\s\S]*boot: KILN-VERIFY-\d+ after \d+(\.\d+)? s/, "the new image booted under qemu");
  const describe = await runKiln(["ims", "images", "describe", done.resultant_image_id!], { env });
  assert.match(describe.stdout, /package changes against .*\n {2}\+ hello /);
  await assertSourceUnchanged();
});

for (const jail of [true, false]) {
  test(`kill -9 during a ${jail ? "jailed" : "not-jailed"} session: after a restart the job ends error and nothing of the session is left`, async () => {
    await restart("--verify", "never", "--session-timeout", "20");
    const job = await customize("doomed", jail);
    const open = await waitForSession(job.id);
    const r = await ssh(open, "sleep 600 </dev/null >/dev/null 2>&1 & echo started");
    assert.equal(r.code, 0, r.stderr);
    serve.child.kill("SIGKILL");
    await new Promise((res) => serve.child.once("close", res));
    serve = await startServe(serveArgs("--verify", "never", "--session-timeout", "20"));
    env.KILN_URL = serve.url;
    const failed = await waitFor("the orphaned job to end", async () => {
      const j = await ims<Job>(["jobs", "describe", job.id]);
      return j.status === "error" ? j : undefined;
    }, 60);
    assert.match(failed.kiln.error!, /stopped sending heartbeats .* while the job was waiting_on_user/);
    const work = path.join(cache, "work");
    assert.deepEqual(await mountsUnder(work), [], "the session's mounts are gone");
    assert.deepEqual(processesUnder(work), [], "the session's processes are gone");
    assert.equal(spawnSync("pgrep", ["-fx", "sleep 600"]).status, 1, "the operator's background job is gone");
  });
}

test("a session nobody ends times out: error, no image", async () => {
  const job = await customize("forgotten", false);
  await waitForSession(job.id);
  const done = await waitForEnd(job.id, 120);
  assert.equal(done.status, "error");
  assert.match(done.kiln.error!, /timed out.*20 s/);
});
