/**
 * The startup sweep: finds work dirs whose owning kiln process is gone (killed with SIGKILL, the
 * machine lost power mid-build) and releases what they held, in the order that works:
 *   1. processes still running for that build (found by KILN_WORK in their environment, or by a
 *      root or cwd inside the work dir: dpkg in a chroot, qemu);
 *   2. mounts under the dir, deepest first (unmounting frees their auto-clear loop devices);
 *   3. loop devices still backed by files there;
 *   4. the dir itself.
 * Every kiln command that touches the cache runs it first; a worker also sweeps its jobs' folders
 * (`--work-dir/<job-id>`), and its watchdog (watchdog.ts) runs both sweeps the moment it dies.
 */
import { readdir, readFile, readlink, stat } from "node:fs/promises";
import path from "node:path";
import { capture, exec, type LogSink } from "./exec.js";
import { mountTargetsUnder } from "./mountinfo.js";
import { unmount } from "./mount.js";
import { isProcessAlive } from "./process-alive.js";
import { processStartTime, removeTree, type Owner } from "./workdir.js";

export interface SweepReport {
  dir: string;
  processes: number;
  mounts: number;
  loops: number;
}

/** The build work dirs (`<cache>/work/<id>`) whose owner is gone. */
export function sweepDeadBuilds(cacheDir: string, log: LogSink): Promise<SweepReport[]> {
  return sweepDeadWorkDirs(path.join(cacheDir, "work"), log);
}

/** Sweeps each folder of `root` whose owner.json names a process that is gone (workdir.ts). */
export async function sweepDeadWorkDirs(root: string, log: LogSink): Promise<SweepReport[]> {
  let ids: string[];
  try {
    ids = await readdir(root);
  } catch {
    return [];
  }
  const reports: SweepReport[] = [];
  for (const id of ids) {
    const dir = path.join(root, id);
    if (await isInUse(dir, id)) continue;
    reports.push(await sweepDir(dir, log));
  }
  return reports;
}

/**
 * The names Kiln gives the folders it sweeps: a build's `<time>-<pid>-<hex>` (workdir.ts) and a
 * job's id. Anything else in a root (a --work-dir pointed at a shared folder) is not Kiln's.
 */
const KILN_DIR_NAME = /^(\d{8}T\d{6}-\d+(-[0-9a-f]+)?|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$/;

/** How long a folder without owner.json is left alone: its maker may be about to write it. */
const UNOWNED_GRACE_MS = 60_000;

/** True while the folder's owner lives, and for a folder that is not Kiln's or is being made. */
async function isInUse(dir: string, name: string): Promise<boolean> {
  let owner: Owner;
  try {
    owner = JSON.parse(await readFile(path.join(dir, "owner.json"), "utf8")) as Owner;
  } catch {
    // No owner file: a process that died while creating the dir, or one creating it right now.
    if (!KILN_DIR_NAME.test(name)) return true;
    const made = await stat(dir).then((s) => s.mtimeMs, () => 0);
    return Date.now() - made < UNOWNED_GRACE_MS;
  }
  const start = await processStartTime(owner.pid);
  return start !== undefined && start === owner.start;
}

export async function sweepDir(dir: string, log: LogSink): Promise<SweepReport> {
  const report: SweepReport = { dir, processes: 0, mounts: 0, loops: 0 };
  report.processes = await killProcessesOf(dir);
  for (const target of await mountTargetsUnder(dir)) {
    await unmount(target, { log });
    report.mounts++;
  }
  report.loops = await detachLoopsUnder(dir, log);
  await removeTree(dir, log);
  log.line(`swept ${dir}: ${report.processes} processes, ${report.mounts} mounts, ${report.loops} loop devices`);
  return report;
}

async function killProcessesOf(dir: string): Promise<number> {
  const marker = `KILN_WORK=${dir}`;
  const victims: number[] = [];
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid) continue;
    try {
      const environ = (await readFile(`/proc/${pid}/environ`)).toString("utf8").split("\0");
      const inside = async (link: string) => {
        const p = await readlink(`/proc/${pid}/${link}`).catch(() => "");
        return p === dir || p.startsWith(dir + "/");
      };
      if (environ.includes(marker) || (await inside("root")) || (await inside("cwd"))) victims.push(pid);
    } catch {
      // gone, or a kernel thread
    }
  }
  await killAndWait(victims);
  return victims.length;
}

/**
 * Kills every process whose environment holds `entry` (NAME=value): what a customize session
 * uses on close for processes that left their process group (setsid, nohup) while it ran.
 */
export async function killProcessesWithEnv(entry: string): Promise<number> {
  const victims: number[] = [];
  for (const e of await readdir("/proc")) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue;
    try {
      if ((await readFile(`/proc/${e}/environ`)).toString("utf8").split("\0").includes(entry)) victims.push(Number(e));
    } catch {
      // gone, or a kernel thread
    }
  }
  await killAndWait(victims);
  return victims.length;
}

async function killAndWait(victims: number[]): Promise<void> {
  for (const pid of victims) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
  // Wait for them to die so their mounts are no longer busy.
  for (let i = 0; i < 50 && victims.some(isProcessAlive); i++) await new Promise((r) => setTimeout(r, 100));
}

async function detachLoopsUnder(dir: string, log: LogSink): Promise<number> {
  let out: string;
  try {
    out = await capture(["losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE"]);
  } catch {
    return 0;
  }
  let n = 0;
  for (const line of out.split("\n")) {
    const [dev, ...rest] = line.trim().split(/\s+/);
    const file = rest.join(" ").replace(/ \(deleted\)$/, "");
    if (dev && (file === dir || file.startsWith(dir + "/"))) {
      await exec(["losetup", "-d", dev], { log });
      n++;
    }
  }
  return n;
}
