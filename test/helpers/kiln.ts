/** Runs the real `kiln` CLI for integration tests, with a fresh layer cache and a shared apt archive cache. */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdir, mkdtemp, symlink } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const REPO = fileURLToPath(new URL("../../../", import.meta.url));
export const CLI = path.join(REPO, "dist/src/cli/main.js");

/**
 * A scratch dir with cache/ whose apt archive cache is shared between test runs (downloads once
 * per package version; KILN_TEST_APT_CACHE, set by .ci/run). Layers start empty, unless
 * `sharedLayers` is set: then layers and artifacts are shared by every test file of this test run
 * (KILN_TEST_SHARED_CACHE, made per run by .ci/run), so a second suite that needs a built root
 * reuses the bootstrap instead of paying for it again.
 */
export async function scratch(prefix = "kiln-it-", opts: { sharedLayers?: boolean } = {}): Promise<{ dir: string; cache: string; out: (name: string) => string }> {
  const dir = await mkdtemp(path.join("/var/tmp", prefix));
  const cache = path.join(dir, "cache");
  const shared = process.env.KILN_TEST_APT_CACHE ?? "/var/cache/kiln-test/apt";
  await mkdir(path.join(shared, "archives"), { recursive: true });
  await mkdir(cache, { recursive: true });
  await symlink(shared, path.join(cache, "apt"));
  if (opts.sharedLayers) {
    // Same filesystem as the scratch dir (/var/tmp), so the store's rename into place still works.
    const layers = process.env.KILN_TEST_SHARED_CACHE ?? "/var/tmp/kiln-test-shared";
    for (const section of ["layers", "artifacts"]) {
      await mkdir(path.join(layers, section), { recursive: true });
      await symlink(path.join(layers, section), path.join(cache, section));
    }
  }
  return { dir, cache, out: (name) => path.join(dir, name) };
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Starts `kiln ARGS`; `prefix` runs it through another command first (`ip netns exec NS`). */
export function startKiln(args: string[], opts: { cwd?: string; env?: Record<string, string>; prefix?: string[] } = {}): { child: ChildProcess; done: Promise<RunResult>; onStdout(fn: (s: string) => void): void } {
  const argv = [...(opts.prefix ?? []), process.execPath, CLI, ...args];
  const child = spawn(argv[0]!, argv.slice(1), { cwd: opts.cwd ?? REPO, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...opts.env } });
  let stdout = "";
  let stderr = "";
  const listeners: Array<(s: string) => void> = [];
  child.stdout!.on("data", (d: Buffer) => {
    stdout += d.toString();
    for (const l of listeners) l(stdout);
  });
  child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<RunResult>((resolve) => child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr })));
  return { child, done, onStdout: (fn) => listeners.push(fn) };
}

export function runKiln(args: string[], opts: { cwd?: string; env?: Record<string, string> } = {}): Promise<RunResult> {
  return startKiln(args, opts).done;
}

/** Parses --json event lines. */
export function events(stdout: string): Array<Record<string, unknown>> {
  return stdout.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as Record<string, unknown>);
}
