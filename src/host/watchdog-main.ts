/**
 * The watchdog process (see watchdog.ts): `node watchdog-main.js OWNER_PID ROOT...`. Waits for its
 * stdin to close, which happens when the owner dies or stops it, then sweeps each root.
 */
import { sweepDeadWorkDirs } from "./sweep.js";

const [ownerPid, ...roots] = process.argv.slice(2);
const say = (line: string) => process.stderr.write(`kiln watchdog (worker pid ${ownerPid}): ${line}\n`);

async function sweepAll(): Promise<void> {
  for (const root of roots) {
    for (const r of await sweepDeadWorkDirs(root, { line: () => {} })) {
      say(`cleaned up after a dead worker: ${r.dir}: ${r.processes} processes, ${r.mounts} mounts, ${r.loops} loop devices`);
    }
  }
}

// A terminal's Ctrl-C or a service manager's SIGTERM is for the worker; this process ends by itself.
process.on("SIGINT", () => {});
process.on("SIGTERM", () => {});
process.stdin.on("error", () => {});
process.stdin.resume();
process.stdin.on("close", () => {
  sweepAll().then(
    () => process.exit(0),
    (e: unknown) => {
      say(`sweep failed: ${(e as Error).message}`);
      process.exit(1);
    },
  );
});
