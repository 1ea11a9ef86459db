/** Runs real `kiln serve` / `kiln worker` processes for integration tests. */
import type { ChildProcess } from "node:child_process";
import { runKiln, startKiln } from "./kiln.js";

export interface ServiceProcess {
  url: string;
  child: ChildProcess;
  output(): { stdout: string; stderr: string };
  /** SIGTERM, and wait for the exit; returns the exit code. */
  stop(): Promise<number | null>;
}

/** Starts `kiln serve ARGS` on a free loopback port; resolves once it listens. */
export async function startServe(args: string[], env: Record<string, string> = {}, prefix?: string[]): Promise<ServiceProcess> {
  const p = startKiln(["serve", "--listen", "127.0.0.1:0", ...args], { env, prefix });
  let stdout = "";
  let stderr = "";
  p.onStdout((s) => (stdout = s));
  p.child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`kiln serve did not start in 120 s:\n${stderr}`)), 120_000);
    p.onStdout((s) => {
      const m = /listening on (https?:\/\/\S+)/.exec(s);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    void p.done.then((r) => {
      clearTimeout(timer);
      reject(new Error(`kiln serve exited with ${r.code}:\n${r.stderr}`));
    });
  });
  return {
    url,
    child: p.child,
    output: () => ({ stdout, stderr }),
    async stop() {
      if (p.child.exitCode !== null || p.child.signalCode !== null) return p.child.exitCode;
      p.child.kill("SIGTERM");
      return (await p.done).code;
    },
  };
}

/** Starts `kiln worker ARGS`; resolves once it takes jobs. */
export async function startWorker(args: string[], env: Record<string, string> = {}, prefix?: string[]): Promise<ServiceProcess> {
  const p = startKiln(["worker", ...args], { env, prefix });
  let stderr = "";
  p.child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`kiln worker did not start in 120 s:\n${stderr}`)), 120_000);
    p.onStdout((s) => {
      if (/worker \S+ running/.test(s)) {
        clearTimeout(timer);
        resolve();
      }
    });
    void p.done.then((r) => {
      clearTimeout(timer);
      reject(new Error(`kiln worker exited with ${r.code}:\n${r.stderr}`));
    });
  });
  return {
    url: "",
    child: p.child,
    output: () => ({ stdout: "", stderr }),
    async stop() {
      if (p.child.exitCode !== null || p.child.signalCode !== null) return p.child.exitCode;
      p.child.kill("SIGTERM");
      return (await p.done).code;
    },
  };
}

/** `kiln token create --role ROLE --data-dir DIR`; returns the last line (the token). */
export async function createToken(dataDir: string, role: "admin" | "read-only"): Promise<string> {
  const r = await runKiln(["token", "create", "--role", role, "--data-dir", dataDir]);
  if (r.code !== 0) throw new Error(`kiln token create failed: ${r.stderr}`);
  return r.stdout.trim().split("\n").at(-1)!;
}
