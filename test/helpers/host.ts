/** Host checks shared by integration tests: what is mounted, looped or running under a directory. */
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { mountTargetsUnder } from "../../src/host/mountinfo.js";

export async function mountsUnder(dir: string): Promise<string[]> {
  return mountTargetsUnder(dir);
}

/** Loop devices whose backing file is under dir (losetup's view, as the issue asks). */
export function loopsUnder(dir: string): string[] {
  const out = execFileSync("losetup", ["--list", "--noheadings", "--output", "NAME,BACK-FILE"], { encoding: "utf8" });
  return out.split("\n").filter((l) => l.includes(dir));
}

/** Processes carrying KILN_WORK under dir in their environment, or rooted there. */
export function processesUnder(dir: string): number[] {
  const found: number[] = [];
  for (const e of readdirSync("/proc")) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue;
    try {
      const env = readFileSync(`/proc/${e}/environ`, "utf8").split("\0");
      const root = readlinkSync(`/proc/${e}/root`);
      if (env.some((v) => v.startsWith(`KILN_WORK=${dir}`)) || root.startsWith(dir)) found.push(Number(e));
    } catch {
      // gone
    }
  }
  return found;
}
