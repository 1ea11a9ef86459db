/**
 * Boot-verifies a build's out dir (docs/architecture.md#boot-verification). Targets, per flavor:
 *  - pxe: the kernel + initrd boot diskless, the squashfs fetched over HTTP from this host, the
 *    way a PXE-booted machine would;
 *  - qcow2-bios, qcow2-uefi: the disk through SeaBIOS, and OVMF (Secure Boot on when available);
 *  - iso-bios (as a CD), iso-uefi (as a USB stick: the hybrid image);
 *  - iso-seeded:<name>: each ISO made by `kiln iso --seed`, as a CD under UEFI, with cloud-init
 *    on: it passes only if the guest's hostname is the one the seed's meta data gives.
 *
 * Contract: reads <out>/result.json, serves <out> on loopback for pxe (the guest reaches it at
 * 10.0.2.2), boots side by side as many targets as the job slots and memory allow (each guest
 * takes a slot per vCPU and its RAM: on 2 cores with the default --jobs, one at a time; see
 * docs/architecture.md#running-side-by-side), keeps each serial log under <out>/logs/ and writes
 * the results, in target order whatever order they finished in, into result.json's `verify`
 * array, replacing the entries of the (flavor, target) pairs it booted and keeping everything else.
 */
import { mkdir, readFile, rename, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import type { BuildResult, ResultArtifact, VerifyEntry } from "../artifacts/result.js";
import { ARTIFACT_KINDS } from "../artifacts/types.js";
import { KilnError } from "../errors.js";
import { nullLog, type LogSink } from "../host/exec.js";
import { defaultJobs, HOST_RESERVE_MIB, hostCapacity, runTasks, type Task } from "../engine/scheduler.js";
import { bootKernel, GUEST_CPUS } from "./boot.js";
import { bootedDigests, bootHarness, bootKey, type BootHarness, type BootKeyRecord, type BootResultCache } from "./boot-cache.js";
import { bootMedium, type Firmware, type MediumBootOptions } from "./boot-medium.js";
import { verifyCmdline } from "./cmdline.js";
import { serveDirectory } from "./http-server.js";

export type VerifyResult = VerifyEntry;

export interface VerifyOptions {
  /** Only these flavors (default: every flavor with a boot-kernel). */
  flavors?: string[];
  /** Only these targets (pxe, qcow2-bios, …, iso-seeded:<name>, or iso-seeded for all seeded ISOs); default all. */
  targets?: string[];
  signal?: AbortSignal;
  log?: LogSink;
  workDir?: string;
  /** Per boot; default bootKernel's. */
  timeoutSeconds?: number;
  /** Reuse passing boots of the same bytes and harness from here; without it every boot runs. */
  bootCache?: BootResultCache;
  /** Boot even when a passing result is cached (--reverify); the new result replaces it. */
  reverify?: boolean;
  /** What boots: qemu, unless a test fakes it. */
  runners?: { kernel: typeof bootKernel; medium: typeof bootMedium };
  /** Job slots for the boots (each takes GUEST_CPUS); default from the host (scheduler.ts defaultJobs). */
  jobs?: number;
  /** Memory the guests may use together, MiB; default what the host has available now, less a reserve. */
  memoryMiB?: number;
  /** Told when a boot begins and when it ends, with the boots that ran beside it (`boot:<flavor>:<target>`). */
  onBoot?: {
    start(b: { flavor: string; target: string; running: string[] }): void;
    end(r: VerifyResult, ranWith: string[]): void;
  };
}

/** A disk's or an ISO's guest RAM (bootMedium's). */
const MEDIUM_MEMORY_MIB = 2048;

/** Looks a boot up in the cache, or runs it and keeps it if it passed. */
async function cachedBoot(
  opts: VerifyOptions,
  harness: BootHarness | undefined,
  what: { flavor: string; target: string; files: Record<string, string>; serialLog: string },
  boot: () => Promise<VerifyResult>,
): Promise<VerifyResult> {
  if (!opts.bootCache || !harness) return boot();
  const record: BootKeyRecord = { flavor: what.flavor, target: what.target, booted: await bootedDigests(what.files), ...harness };
  const key = bootKey(record);
  if (!opts.reverify) {
    const hit = await opts.bootCache.get(key, what.serialLog);
    if (hit) {
      opts.log?.line(`verify: ${what.flavor} ${what.target}: cached (this build's bytes booted before with the same harness)`);
      return { ...hit, cached: true };
    }
  }
  const r = await boot();
  await opts.bootCache.put(key, r, what.serialLog, record);
  return r;
}

/**
 * The targets a build can have, by name, in boot order: what `--target` accepts. `iso-seeded`
 * stands for every ISO made by `kiln iso --seed`, `iso-seeded:<name>` for one of them.
 */
export const VERIFY_TARGET_NAMES = ["pxe", "qcow2-bios", "qcow2-uefi", "iso-bios", "iso-uefi", "iso-seeded"] as const;

/** Whether `word` names a kind of target (whether a build has it is verifyTargets' question). */
export function isVerifyTargetName(word: string): boolean {
  return (VERIFY_TARGET_NAMES as readonly string[]).includes(word) || /^iso-seeded:[a-z0-9][a-z0-9-]{0,62}$/.test(word);
}

/** qemu user networking's address for the host's loopback. */
const HOST_FROM_GUEST = "10.0.2.2";

export async function verifyOut(outDir: string, opts: VerifyOptions = {}): Promise<VerifyResult[]> {
  const log = opts.log ?? nullLog;
  const result = await readBuildResult(outDir);
  const squashfs = result.artifacts.find((a) => a.name === "squashfs");
  const targets = selectTargets(result, opts);
  if (!squashfs && !targets.some((t) => t.target !== "pxe")) {
    throw new KilnError("INPUT_INVALID", `${path.join(outDir, "result.json")}: no squashfs artifact to boot from`, {
      hint: 'build with "squashfs" among the recipe\'s outputs',
    });
  }
  const pxe = squashfs ? targets.filter((t) => t.target === "pxe") : [];
  await mkdir(path.join(outDir, "logs"), { recursive: true });
  const harness = opts.bootCache ? await bootHarness() : undefined;

  const boots = [...pxe, ...targets.filter((t) => t.target !== "pxe")];
  const pxeMemoryMiB = squashfs ? await guestMemoryMiB(path.join(outDir, squashfs.path)) : 0;
  const server = pxe.length > 0 && squashfs ? await serveDirectory(outDir, { log, routes: { "/squashfs": squashfs.path } }) : undefined;
  let results: VerifyResult[];
  try {
    const squashfsUrl = `http://${HOST_FROM_GUEST}:${server?.port ?? 0}/squashfs`;
    const lanes = new LogLanes(log);
    const tasks = boots.map((t): Task<VerifyResult> => ({
      id: `boot:${t.flavor}:${t.target}`,
      slots: GUEST_CPUS,
      memoryMiB: t.target === "pxe" ? pxeMemoryMiB : MEDIUM_MEMORY_MIB,
      async run(signal, info) {
        opts.onBoot?.start({ flavor: t.flavor, target: t.target, running: info.running() });
        const lane = lanes.open();
        const own = { ...opts, signal, log: lane };
        let r: VerifyResult;
        try {
          lane.line(`verify: ${t.flavor}${t.target === "pxe" ? "" : ` ${t.target}`}`);
          r =
            t.target === "pxe"
              ? { ...(await verifyFlavor(outDir, result.artifacts, t.flavor, path.join(outDir, squashfs!.path), squashfsUrl, pxeMemoryMiB, own, harness)), target: "pxe" }
              : await verifyMedium(outDir, t, own, harness);
        } finally {
          lane.close();
        }
        opts.onBoot?.end(r, info.ranWith());
        return r;
      },
    }));
    const capacity = hostCapacity();
    const limits = { jobs: opts.jobs ?? defaultJobs(capacity), memoryMiB: opts.memoryMiB ?? capacity.availableMiB - HOST_RESERVE_MIB };
    results = await runTasks(tasks, limits, opts.signal ?? new AbortController().signal);
  } finally {
    await server?.close();
  }
  await writeVerify(outDir, results);
  return results;
}

/**
 * Keeps the lines of boots running side by side apart in the one verify log: the earliest
 * started boot still running writes through; the others' lines wait, and go in as one block
 * each, in start order, when every boot started before them has ended.
 */
class LogLanes {
  private readonly lanes: Array<{ lines: string[]; closed: boolean }> = [];
  constructor(private readonly log: LogSink) {}

  open(): LogSink & { close(): void } {
    const lane = { lines: [] as string[], closed: false };
    this.lanes.push(lane);
    return {
      line: (text) => {
        if (this.lanes[0] === lane) this.log.line(text);
        else lane.lines.push(text);
      },
      close: () => {
        lane.closed = true;
        this.drain();
      },
    };
  }

  private drain(): void {
    while (this.lanes.length > 0) {
      const head = this.lanes[0]!;
      for (const l of head.lines.splice(0)) this.log.line(l);
      if (!head.closed) return; // it writes through from now on
      this.lanes.shift();
    }
  }
}

/** One boot to make: which flavor, which target, and for disks and ISOs what to boot and how. */
export interface VerifyTarget {
  flavor: string;
  target: string;
  medium?: MediumBootOptions["medium"];
  firmware?: Firmware;
  /** A seeded ISO: the hostname the guest must have. */
  hostname?: string;
  seeded?: boolean;
}

/**
 * The boots verifyOut makes for `opts.flavors` and `opts.targets`; a flavor or target the build
 * has no artifact for is a USAGE error naming what it has. Reads nothing but `result`, so the CLI
 * checks its options with it before it writes anything.
 */
export function selectTargets(result: BuildResult, opts: Pick<VerifyOptions, "flavors" | "targets">): VerifyTarget[] {
  return verifyTargets(result, pickFlavors(result, opts.flavors), opts.targets);
}

/** Every boot result.json allows, in order (pxe first, then disks, ISOs, seeded ISOs), filtered. */
export function verifyTargets(result: BuildResult, flavors: string[], only?: string[]): VerifyTarget[] {
  const all: VerifyTarget[] = [];
  const of = (ftype: string, flavor: string) => result.artifacts.find((a) => a.ftype === ftype && a.flavor === flavor);
  for (const flavor of flavors) {
    if (of("boot-kernel", flavor) && result.artifacts.some((a) => a.name === "squashfs")) all.push({ flavor, target: "pxe" });
    const disk = of(ARTIFACT_KINDS.qcow2.ftype, flavor);
    if (disk) {
      for (const firmware of ["bios", "uefi"] as const) all.push({ flavor, target: `qcow2-${firmware}`, firmware, medium: { kind: "disk", file: disk.path } });
    }
    const iso = of(ARTIFACT_KINDS.iso.ftype, flavor);
    if (iso) {
      all.push({ flavor, target: "iso-bios", firmware: "bios", medium: { kind: "cdrom", file: iso.path } });
      all.push({ flavor, target: "iso-uefi", firmware: "uefi", medium: { kind: "usb", file: iso.path } });
    }
    for (const s of result.seeded ?? []) {
      if (s.flavor !== flavor) continue;
      all.push({ flavor, target: `iso-seeded:${s.seed.name}`, firmware: "uefi", medium: { kind: "cdrom", file: s.path }, hostname: s.seed.hostname, seeded: true });
    }
  }
  if (!only || only.length === 0) return all;
  const unknown = only.filter((w) => !all.some((t) => t.target === w || (w === "iso-seeded" && t.seeded)));
  if (unknown.length > 0) {
    const has = [...new Set(all.map((t) => t.target))];
    const hints = [...new Set(unknown.map(missingTargetHint).filter((h) => h !== undefined))];
    throw new KilnError("USAGE", `--target ${unknown.join(", ")}: not in this build; it has ${has.length > 0 ? has.join(", ") : "no target for these flavors"}`, {
      ...(hints.length > 0 ? { hint: hints.join("; ") } : {}),
    });
  }
  return all.filter((t) => only.includes(t.target) || (t.seeded === true && only.includes("iso-seeded")));
}

/** What a build needs for a target it lacks. */
function missingTargetHint(target: string): string | undefined {
  if (target === "pxe") return 'pxe boots a flavor\'s boot-kernel with the squashfs: the recipe\'s outputs need "kernel", "initrd" and "squashfs"';
  if (target.startsWith("qcow2-")) return 'a disk comes from outputs: [qcow2] in the recipe (for its first kernel flavor)';
  if (target.startsWith("iso-seeded")) return "a seeded ISO comes from kiln iso OUT --seed DIR";
  if (target.startsWith("iso-")) return 'a live ISO comes from outputs: [iso] in the recipe (for its first kernel flavor)';
  return undefined;
}

async function verifyMedium(outDir: string, t: VerifyTarget, opts: VerifyOptions, harness?: BootHarness): Promise<VerifyResult> {
  const logRel = `logs/verify-${t.flavor}-${t.target.replace(/[^a-z0-9.-]/gi, "-")}.log`;
  const base = { flavor: t.flavor, target: t.target, firmware: t.firmware, log: logRel };
  const file = path.join(outDir, t.medium!.file);
  if ((await stat(file).catch(() => undefined)) === undefined) {
    return { ...base, ok: false, seconds: 0, reason: `${t.medium!.file} is listed in result.json but missing` };
  }
  const files = { [t.medium!.kind === "disk" ? "disk" : "iso"]: file };
  return cachedBoot(opts, harness, { flavor: t.flavor, target: t.target, files, serialLog: path.join(outDir, logRel) }, () => bootMediumEntry(outDir, t, opts, base, file, logRel));
}

async function bootMediumEntry(outDir: string, t: VerifyTarget, opts: VerifyOptions, base: Pick<VerifyResult, "flavor" | "target" | "firmware" | "log">, file: string, logRel: string): Promise<VerifyResult> {
  const r = await (opts.runners?.medium ?? bootMedium)({
    medium: { kind: t.medium!.kind, file },
    firmware: t.firmware!,
    memoryMiB: MEDIUM_MEMORY_MIB,
    serialLog: path.join(outDir, logRel),
    timeoutSeconds: opts.timeoutSeconds,
    signal: opts.signal,
    log: opts.log,
    workDir: opts.workDir,
    cloudInit: t.seeded,
  });
  const entry: VerifyResult = { ...base, ok: r.ok, seconds: r.seconds };
  if (r.secureBoot !== undefined) entry.secureBoot = r.secureBoot;
  if (r.hostname !== undefined) entry.hostname = r.hostname;
  if (r.reason) entry.reason = r.reason;
  if (t.seeded && r.ok && t.hostname !== undefined && r.hostname?.split(".")[0] !== t.hostname.split(".")[0]) {
    entry.ok = false;
    entry.reason = `the guest booted with hostname ${r.hostname ?? "(none printed)"}, not ${t.hostname} from the seed's meta data: cloud-init did not apply the seed`;
  }
  return entry;
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
  const bootable = new Set<string>([ARTIFACT_KINDS.kernel.ftype, ARTIFACT_KINDS.qcow2.ftype, ARTIFACT_KINDS.iso.ftype]);
  const available = [...new Set(result.artifacts.filter((a) => bootable.has(a.ftype) && a.flavor).map((a) => a.flavor!))];
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
  squashfsFile: string,
  squashfsUrl: string,
  memoryMiB: number,
  opts: VerifyOptions,
  harness?: BootHarness,
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
  const files = { kernel, initrd, squashfs: squashfsFile, "boot-params": params };
  return cachedBoot(opts, harness, { flavor, target: "pxe", files, serialLog: path.join(outDir, logRel) }, () => bootFlavor(outDir, flavor, kernel, initrd, params, squashfsUrl, memoryMiB, opts, logRel));
}

async function bootFlavor(outDir: string, flavor: string, kernel: string, initrd: string, params: string, squashfsUrl: string, memoryMiB: number, opts: VerifyOptions, logRel: string): Promise<VerifyResult> {
  const template = await readFile(params, "utf8");
  if (!template.includes("${squashfs_url}")) {
    opts.log?.line(`verify: ${flavor}/boot-params has no \${squashfs_url}: the guest will not fetch this build's root`);
  }
  const cmdline = verifyCmdline(template, squashfsUrl);
  const r = await (opts.runners?.kernel ?? bootKernel)({
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

/** Replaces the entries of the booted (flavor, target) pairs, keeps the rest; written whole, then renamed in. */
async function writeVerify(outDir: string, results: VerifyResult[]): Promise<void> {
  const file = path.join(outDir, "result.json");
  const current = await readBuildResult(outDir); // re-read: keep whatever changed meanwhile
  const id = (v: VerifyResult) => `${v.flavor} ${v.target ?? "pxe"}`;
  const booted = new Set(results.map(id));
  current.verify = [...(current.verify ?? []).filter((v) => !booted.has(id(v))), ...results];
  const tmp = `${file}.tmp-${process.pid}`;
  await writeFile(tmp, JSON.stringify(current, null, 2) + "\n");
  await rename(tmp, file);
}
