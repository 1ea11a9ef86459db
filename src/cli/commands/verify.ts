/** `kiln verify OUT`: boot every flavor of a build under qemu, root over HTTP; exit 1 if any fails. */
import { mkdir } from "node:fs/promises";
import path from "node:path";
import { KilnError } from "../../errors.js";
import type { LogSink } from "../../host/exec.js";
import { createWorkDir, type WorkDir } from "../../host/workdir.js";
import { openStageLog } from "../../engine/stage-log.js";
import { readBuildResult, verifyOut, type VerifyResult } from "../../verify/verify-out.js";

export interface VerifyFlags {
  flavor?: string[];
  json?: boolean;
  /** Seconds per boot. */
  timeout?: number;
  /** Where the work dir (KILN_WORK, for the crash sweep) goes; default $KILN_CACHE_DIR or /var/cache/kiln. */
  cacheDir?: string;
}

export async function verifyCommand(
  outDir: string,
  opts: VerifyFlags,
  io: { signal: AbortSignal; stdout: NodeJS.WritableStream },
): Promise<number> {
  if (opts.timeout !== undefined && !(Number.isFinite(opts.timeout) && opts.timeout > 0)) {
    throw new KilnError("USAGE", "--timeout: give the seconds each boot may take, a positive number, e.g. --timeout 300");
  }
  await readBuildResult(outDir); // a wrong dir fails here, before anything is written into it
  await mkdir(path.join(outDir, "logs"), { recursive: true });
  const log = openStageLog(outDir, "verify", () => {});
  // A work dir names this run's qemu (KILN_WORK), so the startup sweep can kill it if kiln is
  // SIGKILLed mid-boot. Verify needs no root: without a writable cache, boot without one.
  const work = await createWorkDir(opts.cacheDir ?? process.env.KILN_CACHE_DIR ?? "/var/cache/kiln", log).catch((e: unknown) => {
    log.line(`verify: no work dir (${(e as Error).message}); a killed kiln may leave qemu running`);
    return undefined;
  });
  let results: VerifyResult[];
  try {
    results = await verifyOut(outDir, { flavors: opts.flavor, signal: io.signal, log, workDir: work?.path, timeoutSeconds: opts.timeout });
  } finally {
    await release(work, log);
    await log.close();
  }
  io.stdout.write(opts.json ? JSON.stringify(results, null, 2) + "\n" : results.map(formatResult).join(""));
  return results.every((r) => r.ok) ? 0 : 1;
}

/** `✓ generic  booted in 48.0 s  (logs/verify-generic.log)` or `✗ generic qcow2-uefi  <reason>  (log)`. */
export function formatResult(r: VerifyResult): string {
  const notes = [r.secureBoot ? "Secure Boot on" : "", r.hostname ? `hostname ${r.hostname}` : ""].filter(Boolean).join(", ");
  const what = r.ok ? `booted in ${r.seconds.toFixed(1)} s${notes ? ` (${notes})` : ""}` : (r.reason ?? "failed");
  const target = r.target && r.target !== "pxe" ? ` ${r.target}` : "";
  return `${r.ok ? "✓" : "✗"} ${r.flavor}${target}  ${what}  (${r.log})\n`;
}

async function release(work: WorkDir | undefined, log: LogSink): Promise<void> {
  await work?.release().catch((e: unknown) => log.line(`verify: could not remove ${work.path}: ${(e as Error).message}`));
}
