/**
 * Real servers for integration tests, started with the repository's own scripts (as CI does),
 * or reused from the environment when one is already running:
 *  - S3 (Ceph RGW): scripts/s3-server.sh; reuse with KILN_S3_URL, KILN_S3_ACCESS_KEY, KILN_S3_SECRET_KEY;
 *  - PostgreSQL 15: scripts/postgres-server.sh; reuse with KILN_TEST_DATABASE_URL.
 * A server a test started lives in a fresh directory under /var/tmp; stop() stops it and removes
 * that directory, and does nothing for a reused one.
 */
import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { REPO } from "./kiln.js";

const run = promisify(execFile);

export interface TestServer {
  /** Variables as the script's `env` prints them (or as found in the environment). */
  env: Record<string, string>;
  /** True when this process started the server (and stop() will stop it). */
  started: boolean;
  /** What the start script printed on stderr, e.g. "s3-server: ready in 6.9 s". */
  startLog: string;
  stop(): Promise<void>;
  /** Stops the server but keeps its data (a restart or an outage); start() brings it back. */
  pause(): Promise<void>;
  start(): Promise<void>;
}

/** An S3 server (Ceph RGW); `own` starts one of this test's own even when the environment names one (to stop it). */
export function s3Server(opts: { own?: boolean } = {}): Promise<TestServer> {
  return startOrReuse("s3-server.sh", "kiln-s3-", ["KILN_S3_URL", "KILN_S3_ACCESS_KEY", "KILN_S3_SECRET_KEY"], opts.own);
}

/** A PostgreSQL server; `own` starts one of this test's own even when the environment names one (to stop it). */
export function postgresServer(opts: { own?: boolean } = {}): Promise<TestServer> {
  return startOrReuse("postgres-server.sh", "kiln-pg-", ["KILN_TEST_DATABASE_URL"], opts.own);
}

async function startOrReuse(script: string, prefix: string, vars: string[], own = false): Promise<TestServer> {
  if (process.env[vars[0]!] && !own) {
    const env = Object.fromEntries(vars.map((v) => [v, process.env[v] ?? ""]));
    const shared = async () => {
      throw new Error(`the ${script} server was reused from the environment: start one of the test's own to stop it`);
    };
    return { env, started: false, startLog: "reused from the environment", stop: async () => {}, pause: shared, start: shared };
  }
  const file = path.join(REPO, "scripts", script);
  const dir = await mkdtemp(path.join("/var/tmp", prefix));
  const stop = async () => {
    await run("bash", [file, "stop", dir], { timeout: 120_000 }).catch(() => {});
    await rm(dir, { recursive: true, force: true });
  };
  let startLog: string;
  try {
    // The first start on a machine installs the Debian packages: allow for a slow mirror.
    startLog = (await run("bash", [file, "start", dir], { timeout: 900_000 })).stderr;
  } catch (e) {
    await stop();
    const err = e as Error & { stderr?: string };
    throw new Error(`scripts/${script} start failed: ${err.stderr || err.message}`);
  }
  const { stdout } = await run("bash", [file, "env", dir]);
  const env: Record<string, string> = {};
  // Only the test's own variables: the scripts also print the service's (KILN_STORE,
  // KILN_DATABASE), which would change the defaults of every process a test starts with this env.
  for (const m of stdout.matchAll(/^export (\w+)='([^']*)'$/gm)) if (vars.includes(m[1]!)) env[m[1]!] = m[2]!;
  const pause = async () => void (await run("bash", [file, "stop", dir], { timeout: 120_000 }));
  const start = async () => void (await run("bash", [file, "start", dir], { timeout: 120_000 }));
  return { env, started: true, startLog: startLog.trim(), stop, pause, start };
}
