/**
 * A worker's watchdog: a small process of its own that outlives the worker and cleans up after
 * it the moment it dies. A worker killed with SIGKILL (or OOM-killed, or crashed) cannot release
 * anything itself; without this, the processes its jobs started (a recipe script's `sleep`, dpkg
 * in a chroot, qemu) ran on in their own process groups until they ended by themselves, and the
 * build's mounts stayed until a worker started again on that machine.
 *
 * The worker holds the write end of the watchdog's stdin. The kernel closes it when the worker
 * dies, however it dies; the watchdog then runs the sweep (sweep.ts) over the worker's folders:
 * every folder whose owner process is gone loses its processes, mounts, loop devices and itself.
 * The sweep goes by owner, so a stop on purpose (stdin closed while the worker lives) removes
 * nothing of a live worker. The watchdog runs in its own process group, so a signal to the
 * worker's group (Ctrl-C in a terminal) leaves it to do its work.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";

export interface Watchdog {
  /** Ends the watchdog (it sweeps what is already dead, then exits). */
  stop(): void;
}

/** Starts a watchdog over `roots`: folders whose subfolders carry owner.json (workdir.ts). */
export function startWatchdog(roots: string[]): Watchdog {
  const main = fileURLToPath(new URL("./watchdog-main.js", import.meta.url));
  const env = { ...process.env };
  delete env.KILN_WORK; // it must never look like a process of a build it sweeps
  const child: ChildProcess = spawn(process.execPath, [main, String(process.pid), ...roots], {
    detached: true,
    cwd: "/",
    env,
    stdio: ["pipe", "ignore", "inherit"],
  });
  child.on("error", () => {}); // could not start: the next worker start sweeps instead
  child.stdin!.on("error", () => {});
  // Neither the child nor its pipe may keep the worker's event loop alive.
  child.unref();
  (child.stdin as unknown as { unref?: () => void }).unref?.();
  return { stop: () => child.stdin!.end() };
}
