/** `kiln verify OUT`: boot every flavor of a build under qemu, root over HTTP; exit 1 if any fails. */
import { mkdir } from "node:fs/promises";
import path from "node:path";
import { KilnError } from "../../errors.js";
import type { LogSink } from "../../host/exec.js";
import { createWorkDir, type WorkDir } from "../../host/workdir.js";
import { openStageLog } from "../../engine/stage-log.js";
import { parseJobs } from "./build.js";
import { BootResultCache } from "../../verify/boot-cache.js";
import { isVerifyTargetName, readBuildResult, selectTargets, verifyOut, VERIFY_TARGET_NAMES, type VerifyResult } from "../../verify/verify-out.js";

export interface VerifyFlags {
  flavor?: string[];
  /** --target as given: each value one name or several, comma-separated. */
  target?: string[];
  json?: boolean;
  /** Seconds per boot. */
  timeout?: number;
  /** Where the work dir (KILN_WORK, for the crash sweep) goes; default $KILN_CACHE_DIR or /var/cache/kiln. */
  cacheDir?: string;
  /** Boot even when a passing boot of the same bytes is cached. */
  reverify?: boolean;
  /** --jobs as typed: job slots for the boots (2 per guest). */
  jobs?: string;
}

export async function verifyCommand(
  outDir: string,
  opts: VerifyFlags,
  io: { signal: AbortSignal; stdout: NodeJS.WritableStream },
): Promise<number> {
  if (opts.timeout !== undefined && !(Number.isFinite(opts.timeout) && opts.timeout > 0)) {
    throw new KilnError("USAGE", "--timeout: give the seconds each boot may take, a positive number, e.g. --timeout 300");
  }
  const jobs = parseJobs(opts.jobs);
  const targets = parseTargets(opts.target);
  // A wrong dir, or a flavor or target the build lacks, fails here, before anything is written into it.
  selectTargets(await readBuildResult(outDir), { flavors: opts.flavor, targets });
  await mkdir(path.join(outDir, "logs"), { recursive: true });
  const log = openStageLog(outDir, "verify", () => {});
  // A work dir names this run's qemu (KILN_WORK), so the startup sweep can kill it if kiln is
  // SIGKILLed mid-boot. Verify needs no root: without a writable cache, boot without one.
  const cacheDir = opts.cacheDir ?? process.env.KILN_CACHE_DIR ?? "/var/cache/kiln";
  const work = await createWorkDir(cacheDir, log).catch((e: unknown) => {
    log.line(`verify: no work dir (${(e as Error).message}); a killed kiln may leave qemu running`);
    return undefined;
  });
  let results: VerifyResult[];
  try {
    results = await verifyOut(outDir, { flavors: opts.flavor, targets, signal: io.signal, log, workDir: work?.path, timeoutSeconds: opts.timeout,
      // Boot results are kept beside the layers; without a writable cache (no work dir) every boot runs.
      bootCache: work ? new BootResultCache(path.join(cacheDir, "boots")) : undefined, reverify: opts.reverify, jobs });
  } finally {
    await release(work, log);
    await log.close();
  }
  io.stdout.write(opts.json ? JSON.stringify(results, null, 2) + "\n" : results.map(formatResult).join(""));
  return results.every((r) => r.ok) ? 0 : 1;
}

/** What --target accepts, for its help and its errors. */
export const TARGET_CHOICES = `${VERIFY_TARGET_NAMES.join(", ")} or iso-seeded:<name>`;

/**
 * The --target values (`--target pxe,qcow2-uefi --target iso-bios`) as target names, each checked
 * against the targets kiln verify knows, all bad ones reported at once. Whether the build has
 * them is selectTargets' check. Undefined: every target.
 */
export function parseTargets(values: readonly string[] | undefined): string[] | undefined {
  if (values === undefined || values.length === 0) return undefined;
  const words = values.flatMap((v) => v.split(",")).map((w) => w.trim()).filter((w) => w !== "");
  if (words.length === 0) throw new KilnError("USAGE", `--target: name a target: ${TARGET_CHOICES}`);
  const bad = words.filter((w) => !isVerifyTargetName(w));
  if (bad.length > 0) {
    throw new KilnError("USAGE", `--target ${bad.map((w) => JSON.stringify(w)).join(", ")}: not a verify target; use ${TARGET_CHOICES}`, {
      hint: "several at once: --target qcow2-bios,qcow2-uefi or --target qcow2-bios --target qcow2-uefi",
    });
  }
  return [...new Set(words)];
}

/** `✓ generic  booted in 48.0 s  (logs/verify-generic.log)` or `✗ generic qcow2-uefi  <reason>  (log)`. */
export function formatResult(r: VerifyResult): string {
  const notes = [r.secureBoot ? "Secure Boot on" : "", r.hostname ? `hostname ${r.hostname}` : ""].filter(Boolean).join(", ");
  const what = r.cached ? "cached (these bytes booted before)" : r.ok ? `booted in ${r.seconds.toFixed(1)} s${notes ? ` (${notes})` : ""}` : (r.reason ?? "failed");
  const target = r.target && r.target !== "pxe" ? ` ${r.target}` : "";
  return `${r.ok ? "✓" : "✗"} ${r.flavor}${target}  ${what}  (${r.log})\n`;
}

async function release(work: WorkDir | undefined, log: LogSink): Promise<void> {
  await work?.release().catch((e: unknown) => log.line(`verify: could not remove ${work.path}: ${(e as Error).message}`));
}
