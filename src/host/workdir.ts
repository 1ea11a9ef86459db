/**
 * A build's work dir: `<cache>/work/<id>/`, holding every mount point and scratch file the build
 * makes. `owner.json` names the owning process (pid + its start time, so a recycled pid is not
 * mistaken for the owner). When the owner is gone, sweep.ts cleans the dir up.
 */
import { randomBytes } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { exec, type LogSink } from "./exec.js";
import { mountTargetsUnder } from "./mountinfo.js";
import type { Releasable } from "./scope.js";

export interface WorkDir extends Releasable {
  readonly path: string;
}

export interface Owner {
  pid: number;
  start: string;
}

export async function processStartTime(pid: number): Promise<string | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, "utf8");
    // Field 22 (starttime); fields after the ")" of the command name are space separated.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return fields[19];
  } catch {
    return undefined;
  }
}

export async function createWorkDir(cacheDir: string, log: LogSink): Promise<WorkDir> {
  // The random part keeps two builds of one process (a worker running jobs side by side) apart.
  const id = `${new Date().toISOString().replace(/[-:]/g, "").replace(/\..*/, "")}-${process.pid}-${randomBytes(3).toString("hex")}`;
  const dir = path.join(cacheDir, "work", id);
  await createOwnedDir(dir);
  return {
    path: dir,
    release: () => removeTree(dir, log),
  };
}

/** Makes `dir` with an owner.json naming this process, so the sweep removes it once we are gone. */
export async function createOwnedDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  const owner: Owner = { pid: process.pid, start: (await processStartTime(process.pid)) ?? "" };
  await writeFile(path.join(dir, "owner.json"), JSON.stringify(owner));
}

/**
 * rm -rf that refuses to cross into mounts. A work dir with a forgotten bind of /dev inside it
 * must never take the host's /dev with it: we check mountinfo first and let rm stay on one
 * filesystem as a second guard.
 */
export async function removeTree(dir: string, log: LogSink): Promise<void> {
  const still = await mountTargetsUnder(dir);
  if (still.length > 0) {
    throw new Error(`not removing ${dir}: still mounted: ${still.join(", ")}`);
  }
  await exec(["rm", "-rf", "--one-file-system", dir], { log });
}
