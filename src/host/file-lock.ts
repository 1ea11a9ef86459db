/**
 * A lock shared by Kiln processes on one host: flock(2) on a file, held by a small flock(1) child
 * for as long as the caller needs it (Node has no flock without a native addon). The child reads
 * its stdin, a pipe from this process, and exits at EOF, so the kernel drops the lock on release,
 * on cancel, and when this process dies, even by SIGKILL. The child carries KILN_WORK like every
 * process a build starts, so the startup sweep finds it too.
 */
import { spawn } from "node:child_process";
import { mkdir } from "node:fs/promises";
import path from "node:path";
import { KilnError, cancelled } from "../errors.js";
import { trackProcessGroup } from "./exec.js";
import type { Releasable } from "./scope.js";

export interface FileLockOptions {
  /** Aborting while waiting stops waiting (the promise rejects with CANCELLED). */
  signal?: AbortSignal;
  /** Work dir of the build that takes the lock (marker for the sweep). */
  workDir?: string;
  /** Called once, before waiting, when another process holds the lock. */
  onWait?: () => void;
  /** flock --shared: any number of shared holders at once, none while an exclusive holder has it. */
  shared?: boolean;
}

/** flock --conflict-exit-code: what --nonblock exits with when the lock is taken. */
const CONFLICT = 75;
const RELEASE_GRACE_MS = 5000;

/** Takes a lock on `file` (created if missing; exclusive unless opts.shared), waiting as long as a conflicting holder has it. */
export async function lockFile(file: string, opts: FileLockOptions = {}): Promise<Releasable> {
  await mkdir(path.dirname(file), { recursive: true });
  const now = await holdLock(file, false, opts);
  if (now) return now;
  opts.onWait?.();
  const later = await holdLock(file, true, opts);
  if (!later) throw new Error(`flock ${file}: no lock after waiting`); // flock without --nonblock waits
  return later;
}

function holdLock(file: string, wait: boolean, opts: FileLockOptions): Promise<Releasable | undefined> {
  if (opts.signal?.aborted) return Promise.reject(cancelled(opts.signal.reason));
  // prettier-ignore
  const argv = [opts.shared ? "--shared" : "--exclusive", ...(wait ? [] : ["--nonblock", "--conflict-exit-code", String(CONFLICT)]),
                file, "sh", "-c", "echo locked; exec cat >/dev/null"];
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined) env[k] = v;
  if (opts.workDir) env.KILN_WORK = opts.workDir;
  const child = spawn("flock", argv, { detached: true, stdio: ["pipe", "pipe", "pipe"], env });
  const untrack = child.pid !== undefined ? trackProcessGroup(child.pid) : () => true;
  const kill = () => {
    try {
      if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
    } catch {
      // already gone
    }
  };
  const closed = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
  child.stdin.on("error", () => {}); // the child may be gone before we close its stdin

  return new Promise<Releasable | undefined>((resolve, reject) => {
    let out = "";
    let err = "";
    let locked = false;
    const onAbort = () => kill(); // "close" follows and rejects
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
      if (locked || !out.includes("locked")) return;
      locked = true;
      opts.signal?.removeEventListener("abort", onAbort);
      let released = false;
      resolve({
        async release() {
          if (released) return;
          released = true;
          child.stdin.end();
          const timer = setTimeout(kill, RELEASE_GRACE_MS);
          await closed;
          clearTimeout(timer);
        },
      });
    });
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    child.on("error", (e: NodeJS.ErrnoException) => {
      opts.signal?.removeEventListener("abort", onAbort);
      reject(
        e.code === "ENOENT"
          ? new KilnError("TOOL_MISSING", "flock is not installed on this host", { hint: "install util-linux (flock), which Kiln uses for locks shared between builds" })
          : e,
      );
    });
    void closed.then((code) => {
      untrack();
      if (locked) return;
      opts.signal?.removeEventListener("abort", onAbort);
      if (opts.signal?.aborted) reject(cancelled(opts.signal.reason));
      else if (!wait && code === CONFLICT) resolve(undefined);
      else reject(new Error(`flock ${file} exited with code ${code}${err.trim() ? `: ${err.trim()}` : ""}`));
    });
  });
}
