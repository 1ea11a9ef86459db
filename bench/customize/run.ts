/**
 * bench/customize: how long an operator waits for a customize session, for the image of
 * examples/server.yaml (three flavors), on a real `kiln serve` with the filesystem store:
 *   - shell: from POST /v3/jobs (job_type customize) until `ssh root@host true` succeeds;
 *   - package: from `touch /tmp/complete` until the job is `success` (seal, squashfs, manifest,
 *     upload, new record; no kernel rebuild: the session changes no module).
 * The source image is built once by a create job through the same service (layers come from the
 * cache dir, shared with `kiln build`, so a machine that built the example before starts warm).
 *
 *   node dist/bench/customize/run.js [--runs 3] [--cache-dir /var/cache/kiln] [--jail true|false]
 *
 * Target: shell ready in ≤ 10 s (median).
 */
import { execFileSync, spawnSync } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { parseArgs } from "node:util";
import { REPO, runKiln } from "../../test/helpers/kiln.js";
import { createToken, startServe } from "../../test/helpers/service-process.js";

const { values } = parseArgs({
  options: {
    runs: { type: "string", default: "3" },
    "cache-dir": { type: "string", default: process.env.KILN_CACHE_DIR ?? "/var/cache/kiln" },
    jail: { type: "string", default: "true" },
  },
});
const RUNS = Number(values.runs);
const JAIL = values.jail !== "false";
const SSH_OPTS = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=5"];

type Job = { id: string; status: string; resultant_image_id: string | null; ssh_containers: Array<{ connection_info: Record<string, { host: string; port: number }> }>; kiln: { error: string | null } };

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function main(): Promise<void> {
  const dir = await mkdtemp("/var/tmp/kiln-bench-customize-");
  const dataDir = path.join(dir, "data");
  const key = path.join(dir, "id_ed25519");
  execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", key]);
  const token = await createToken(dataDir, "admin");
  // prettier-ignore
  const serve = await startServe(["--data-dir", dataDir, "--cache-dir", values["cache-dir"]!, "--verify", "never", "--heartbeat", "1", "--ssh-listen", "127.0.0.1", "--ssh-host", "127.0.0.1"]);
  const env = { KILN_URL: serve.url, KILN_TOKEN: token };
  const api = async <T>(method: string, p: string, body?: unknown): Promise<T> => {
    const r = await fetch(`${serve.url}${p}`, { method, headers: { authorization: `Bearer ${token}`, ...(body ? { "content-type": "application/json" } : {}) }, body: body ? JSON.stringify(body) : undefined });
    if (!r.ok) throw new Error(`${method} ${p}: ${r.status} ${await r.text()}`);
    return (await r.json()) as T;
  };
  const waitJob = async (id: string, until: (j: Job) => boolean): Promise<Job> => {
    for (;;) {
      const j = await api<Job>("GET", `/v3/jobs/${id}`);
      if (until(j)) return j;
      if (j.status === "error") throw new Error(`job ${id} failed: ${j.kiln.error}`);
      await sleep(100);
    }
  };
  try {
    const keyId = (await api<{ id: string }>("POST", "/v3/public-keys", { name: "bench", public_key: await readFile(`${key}.pub`, "utf8") })).id;
    await mkdir(path.join(dir, "recipe"));
    await writeFile(path.join(dir, "recipe", "recipe.yaml"), await readFile(path.join(REPO, "examples/server.yaml")));
    const up = await runKiln(["ims", "recipes", "upload", path.join(dir, "recipe"), "--json"], { env });
    if (up.code !== 0) throw new Error(up.stderr);
    const recipeId = (JSON.parse(up.stdout) as { id: string }).id;
    const t0 = Date.now();
    const create = await api<Job>("POST", "/v3/jobs", { job_type: "create", artifact_id: recipeId, public_key_id: keyId, image_root_archive_name: "server" });
    const source = (await waitJob(create.id, (j) => j.status === "success")).resultant_image_id!;
    process.stderr.write(`source image ${source} (create job: ${((Date.now() - t0) / 1000).toFixed(1)} s)\n`);

    const rows: Array<{ shell: number; packaged: number }> = [];
    for (let i = 0; i < RUNS; i++) {
      const start = Date.now();
      const job = await api<Job>("POST", "/v3/jobs", { job_type: "customize", artifact_id: source, public_key_id: keyId, image_root_archive_name: `custom-${i}`, ssh_containers: [{ name: "customize", jail: JAIL }] });
      const open = await waitJob(job.id, (j) => j.status === "waiting_on_user" && j.ssh_containers[0]?.connection_info.customer_access !== undefined);
      const port = String(open.ssh_containers[0]!.connection_info.customer_access!.port);
      const ssh = (cmd: string) => spawnSync("ssh", [...SSH_OPTS, "-p", port, "-i", key, "root@127.0.0.1", cmd], { encoding: "utf8" });
      while (ssh("true").status !== 0) await sleep(100);
      const shell = (Date.now() - start) / 1000;
      const done = Date.now();
      const marker = ssh(JAIL ? "echo bench > /etc/kiln-bench && touch /tmp/complete" : "echo bench > /mnt/image/etc/kiln-bench && touch /mnt/image/complete");
      if (marker.status !== 0) throw new Error(`ssh: ${marker.stderr}`);
      await waitJob(job.id, (j) => j.status === "success");
      rows.push({ shell, packaged: (Date.now() - done) / 1000 });
      process.stderr.write(`run ${i + 1}: shell ${shell.toFixed(1)} s, complete → success ${rows.at(-1)!.packaged.toFixed(1)} s\n`);
    }
    const shell = median(rows.map((r) => r.shell));
    const packaged = median(rows.map((r) => r.packaged));
    process.stdout.write(`\n| examples/server.yaml, ${JAIL ? "jailed" : "not jailed"}, ${RUNS} runs | median s | runs | target |\n|---|---|---|---|\n`);
    process.stdout.write(`| job created → ssh shell works | ${shell.toFixed(1)} | ${rows.map((r) => r.shell.toFixed(1)).join(", ")} | ≤ 10 ${shell <= 10 ? "ok" : "MISSED"} |\n`);
    process.stdout.write(`| complete → success (new image) | ${packaged.toFixed(1)} | ${rows.map((r) => r.packaged.toFixed(1)).join(", ")} | |\n`);
  } finally {
    await serve.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
