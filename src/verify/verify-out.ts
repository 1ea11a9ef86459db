/**
 * Boot-verifies a build's out dir: every flavor's kernel + initrd boots diskless, with the
 * squashfs fetched over HTTP from this host, the way a PXE-booted machine would (DESIGN §6).
 *
 * Contract: reads <out>/result.json, serves <out> on loopback (the guest reaches it at
 * 10.0.2.2), boots the flavors one at a time (each TCG guest uses both cores), keeps each serial
 * log as <out>/logs/verify-<flavor>.log and writes the results into result.json's `verify`
 * array, replacing the entries of the flavors it booted and keeping everything else.
 */
import { mkdir, readFile, rename, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import type { BuildResult, ResultArtifact, VerifyEntry } from "../artifacts/result.js";
import { KilnError } from "../errors.js";
import { nullLog, type LogSink } from "../host/exec.js";
import { bootKernel } from "./boot.js";
import { verifyCmdline } from "./cmdline.js";
import { serveDirectory } from "./http-server.js";

export type VerifyResult = VerifyEntry;

export interface VerifyOptions {
  /** Only these flavors (default: every flavor with a boot-kernel). */
  flavors?: string[];
  signal?: AbortSignal;
  log?: LogSink;
  workDir?: string;
  /** Per boot; default bootKernel's. */
  timeoutSeconds?: number;
}

/** qemu user networking's address for the host's loopback. */
const HOST_FROM_GUEST = "10.0.2.2";

export async function verifyOut(outDir: string, opts: VerifyOptions = {}): Promise<VerifyResult[]> {
  const log = opts.log ?? nullLog;
  const result = await readBuildResult(outDir);
  const flavors = pickFlavors(result, opts.flavors);
  const squashfs = result.artifacts.find((a) => a.name === "squashfs");
  if (!squashfs) {
    throw new KilnError("INPUT_INVALID", `${path.join(outDir, "result.json")}: no squashfs artifact to boot from`, {
      hint: 'build with "squashfs" among the recipe\'s outputs',
    });
  }
  const memoryMiB = await guestMemoryMiB(path.join(outDir, squashfs.path));
  await mkdir(path.join(outDir, "logs"), { recursive: true });

  const server = await serveDirectory(outDir, { log, routes: { "/squashfs": squashfs.path } });
  const results: VerifyResult[] = [];
  try {
    const squashfsUrl = `http://${HOST_FROM_GUEST}:${server.port}/squashfs`;
    for (const flavor of flavors) {
      log.line(`verify: ${flavor}`);
      results.push(await verifyFlavor(outDir, result.artifacts, flavor, squashfsUrl, memoryMiB, opts));
    }
  } finally {
    await server.close();
  }
  await writeVerify(outDir, results);
  return results;
}

/** <out>/result.json, or an error that says this is not a build's out dir. */
export async function readBuildResult(outDir: string): Promise<BuildResult> {
  const file = path.join(outDir, "result.json");
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch {
    throw new KilnError("INPUT_INVALID", `${file}: not found; is ${outDir} the out dir of a kiln build?`);
  }
  let parsed: BuildResult;
  try {
    parsed = JSON.parse(text) as BuildResult;
  } catch (e) {
    throw new KilnError("INPUT_INVALID", `${file}: not valid JSON (${(e as Error).message})`);
  }
  if (!Array.isArray(parsed?.artifacts)) throw new KilnError("INPUT_INVALID", `${file}: has no "artifacts" array`);
  return parsed;
}

function pickFlavors(result: BuildResult, wanted: string[] | undefined): string[] {
  const available = [...new Set(result.artifacts.filter((a) => a.name === "boot-kernel" && a.flavor).map((a) => a.flavor!))];
  if (available.length === 0) {
    throw new KilnError("INPUT_INVALID", "result.json lists no boot-kernel: this build has no kernel flavor to boot");
  }
  if (!wanted || wanted.length === 0) return available;
  const unknown = wanted.filter((f) => !available.includes(f));
  if (unknown.length > 0) {
    throw new KilnError("USAGE", `--flavor ${unknown.join(", ")}: not in this build; it has ${available.join(", ")}`);
  }
  return available.filter((f) => wanted.includes(f));
}

async function verifyFlavor(
  outDir: string,
  artifacts: ResultArtifact[],
  flavor: string,
  squashfsUrl: string,
  memoryMiB: number,
  opts: VerifyOptions,
): Promise<VerifyResult> {
  const logRel = `logs/verify-${flavor}.log`;
  const file = (name: string) => {
    const a = artifacts.find((x) => x.name === name && x.flavor === flavor);
    return a ? path.join(outDir, a.path) : undefined;
  };
  const kernel = file("boot-kernel");
  const initrd = file("boot-initrd");
  const params = file("boot-params");
  const missing = [kernel ? "" : "boot-kernel", initrd ? "" : "boot-initrd", params ? "" : "boot-params"].filter(Boolean);
  if (!kernel || !initrd || !params) {
    return { flavor, ok: false, seconds: 0, log: logRel, reason: `result.json lists no ${missing.join(", ")} for ${flavor}` };
  }
  const template = await readFile(params, "utf8");
  if (!template.includes("${squashfs_url}")) {
    opts.log?.line(`verify: ${flavor}/boot-params has no \${squashfs_url}: the guest will not fetch this build's root`);
  }
  const cmdline = verifyCmdline(template, squashfsUrl);
  const r = await bootKernel({
    kernel,
    initrd,
    cmdline,
    serialLog: path.join(outDir, logRel),
    timeoutSeconds: opts.timeoutSeconds,
    signal: opts.signal,
    log: opts.log,
    workDir: opts.workDir,
    memoryMiB,
  });
  return { flavor, ok: r.ok, seconds: r.seconds, log: logRel, ...(r.reason ? { reason: r.reason } : {}) };
}

/**
 * The guest keeps the downloaded squashfs in RAM (and its modules, and its writes): give it
 * twice the image plus 1 GiB, and never less than the 2 GiB the reference boots used.
 */
async function guestMemoryMiB(squashfs: string): Promise<number> {
  const size = await stat(squashfs).then(
    (s) => s.size,
    () => 0,
  );
  return Math.max(2048, Math.ceil((2 * size) / 2 ** 20) + 1024);
}

/** Replaces the entries of the booted flavors, keeps the rest; written whole, then renamed in. */
async function writeVerify(outDir: string, results: VerifyResult[]): Promise<void> {
  const file = path.join(outDir, "result.json");
  const current = await readBuildResult(outDir); // re-read: keep whatever changed meanwhile
  const booted = new Set(results.map((r) => r.flavor));
  current.verify = [...(current.verify ?? []).filter((v) => !booted.has(v.flavor)), ...results];
  const tmp = `${file}.tmp-${process.pid}`;
  await writeFile(tmp, JSON.stringify(current, null, 2) + "\n");
  await rename(tmp, file);
}
