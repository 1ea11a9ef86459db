/**
 * Boots a kernel + initrd under qemu, with no disk and user networking, and reports whether the
 * guest reached userspace. (Disks and ISOs, through their firmware and GRUB: boot-medium.ts.)
 *
 * Contract: passes when the serial console shows the computed marker (cmdline.ts); fails when
 * qemu exits without it (a panic ends qemu at once: -no-reboot + panic=-1) or at the timeout
 * (in boot seconds: stretched up to 3x while the host's load is above its CPUs, hostShare),
 * with the cause or the last serial lines in `reason`. qemu runs through host/exec.ts, so it has
 * its own process group, carries KILN_WORK for the crash sweep and dies with the CLI; it is
 * killed when this returns, whatever the outcome. Throws only on cancel or a host problem (qemu
 * not installed).
 */
import { mkdir, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { cancelled } from "../errors.js";
import { exec, nullLog, type LogSink } from "../host/exec.js";
import { accelArgs, detectAccel, type Accel } from "./accel.js";
import { createMarker, markerSeen, withMarker, type BootMarker } from "./cmdline.js";
import { explainFailure, LogFollower, readTail } from "./serial-log.js";

export interface BootOptions {
  kernel: string;
  initrd: string;
  /** The command line under test; the marker words are added here. */
  cmdline: string;
  /** Where the guest's serial console is written (replaced if it exists). */
  serialLog: string;
  /** Default 300: TCG boots take 30-150 s on a 2-core host (docs/architecture.md#boot-verification). */
  timeoutSeconds?: number;
  signal?: AbortSignal;
  log?: LogSink;
  /** Work dir of the owning build, for the crash sweep (KILN_WORK). */
  workDir?: string;
  /** Guest RAM. A diskless guest holds its squashfs and its writes in RAM. Default 2048. */
  memoryMiB?: number;
}

export interface BootResult {
  ok: boolean;
  /** From qemu's start to the marker (or to the failure). */
  seconds: number;
  reason?: string;
}

export async function bootKernel(o: BootOptions): Promise<BootResult> {
  const { accel, why } = await detectAccel();
  (o.log ?? nullLog).line(`boot: accelerator ${accel} (${why})`);
  const marker = createMarker();
  const r = await watchBoot({ ...o, argv: qemuCommand(o, accel, marker), marker });
  return { ok: r.ok, seconds: r.seconds, ...(r.reason ? { reason: r.reason } : {}) };
}

/** vCPUs of every verify guest: what a boot takes of the job slots (verify-out.ts). */
export const GUEST_CPUS = 2;

/** The qemu argv: no disk, virtio-net on user networking (the host is 10.0.2.2), serial to a file. */
export function qemuCommand(o: BootOptions, accel: Accel, marker: BootMarker): string[] {
  // prettier-ignore
  return ["qemu-system-x86_64", ...accelArgs(accel), "-smp", String(GUEST_CPUS), "-m", String(o.memoryMiB ?? 2048),
          "-nographic", "-no-reboot", "-serial", `file:${o.serialLog}`, "-monitor", "none",
          "-nic", "user,model=virtio-net-pci",
          "-kernel", o.kernel, "-initrd", o.initrd, "-append", withMarker(o.cmdline, marker)];
}

export interface WatchOptions {
  argv: string[];
  marker: BootMarker;
  serialLog: string;
  timeoutSeconds?: number;
  signal?: AbortSignal;
  log?: LogSink;
  workDir?: string;
  /**
   * Sees the serial output as it comes (each call gets the new text) and may answer the guest,
   * e.g. drive GRUB's menu. Returns a failure reason to stop the boot, or undefined.
   */
  interact?: (text: string) => Promise<string | undefined>;
}

export interface WatchResult extends BootResult {
  /** The serial text around the marker (for what the guest printed after it). */
  tail?: string;
}

const POLL_MS = 500;
// The boot is judged by the serial log, not by how qemu exits: take every exit code.
const ANY_EXIT_CODE = Array.from({ length: 256 }, (_, i) => i);

/** At most this many wall-clock seconds count as one boot second on a busy host. */
const MAX_STRETCH = 3;

/**
 * How much of a wall-clock second counts toward a boot's timeout: 1 on a host with a CPU to
 * spare, less when the load average is above the number of CPUs (a TCG guest then gets that
 * share of a CPU and boots that much slower), never below 1/MAX_STRETCH. So a timeout that
 * holds on an idle host holds on a loaded one, and a guest that is stuck still fails.
 */
export function hostShare(load = os.loadavg()[0]!, cpus = os.availableParallelism()): number {
  return Math.min(1, Math.max(1 / MAX_STRETCH, cpus / Math.max(load, 0.01)));
}

/** Runs qemu (argv writes the serial console to `serialLog`) until the marker, qemu's exit or the timeout. */
export async function watchBoot(o: WatchOptions): Promise<WatchResult> {
  const log = o.log ?? nullLog;
  if (o.signal?.aborted) throw cancelled(o.signal.reason);
  const timeout = o.timeoutSeconds ?? 300;
  const { marker } = o;
  await mkdir(path.dirname(o.serialLog), { recursive: true });
  await rm(o.serialLog, { force: true });
  log.line(`boot: waiting up to ${timeout} s (stretched on a busy host) for ${marker.expected} in ${o.serialLog}`);

  const stop = new AbortController();
  const forwardAbort = () => stop.abort(o.signal?.reason);
  o.signal?.addEventListener("abort", forwardAbort, { once: true });
  const qemuOutput: string[] = [];
  const qemuLog: LogSink = {
    line(text) {
      log.line(text);
      if (!text.startsWith("$ ")) qemuOutput.push(text); // exec logs the argv first
    },
  };
  let exit: { code: number } | { error: unknown } | undefined;
  const started = Date.now();
  const qemu = exec(o.argv, { log: qemuLog, signal: stop.signal, workDir: o.workDir, okCodes: ANY_EXIT_CODE }).then(
    (r) => void (exit = { code: r.code }),
    (error: unknown) => void (exit = { error }),
  );
  const elapsed = () => Math.round((Date.now() - started) / 100) / 10;
  // The timeout is in boot seconds: a poll on a host busier than its CPUs counts for less (hostShare).
  let bootSeconds = 0;
  let lastPoll = started;
  const countBootTime = () => {
    const now = Date.now();
    bootSeconds += ((now - lastPoll) / 1000) * hostShare();
    lastPoll = now;
  };
  const follower = new LogFollower(o.serialLog);
  let recent = "";

  try {
    for (;;) {
      await delay(POLL_MS);
      // Noted before reading, so the last read happens after qemu is gone and misses nothing.
      const exited = exit;
      const fresh = await follower.readNew();
      // Keep a little of the previous read: the marker may straddle two reads.
      recent = recent.slice(-256) + fresh;
      if (markerSeen(recent, marker)) {
        // What the guest prints right after the marker (a hostname) may come a read later.
        await delay(POLL_MS);
        recent += await follower.readNew();
        const seconds = elapsed();
        log.line(`boot: ${marker.expected} after ${seconds} s`);
        return { ok: true, seconds, tail: recent };
      }
      if (o.signal?.aborted) throw cancelled(o.signal.reason);
      if (exited) {
        // Only a host problem gets here (TOOL_MISSING): stop is aborted in `finally` or after o.signal.
        if ("error" in exited) throw exited.error;
        const how = exited.code === 0 ? "qemu exited" : `qemu exited with code ${exited.code}`;
        const qemuSaid = qemuOutput.length > 0 ? ` (qemu: ${qemuOutput.slice(-2).join(" · ")})` : "";
        return fail(`${how} before the guest reached userspace: ${explainFailure(await readTail(o.serialLog))}${qemuSaid}`);
      }
      if (o.interact && fresh) {
        const stopped = await o.interact(fresh);
        if (stopped) return fail(stopped);
      }
      countBootTime();
      if (bootSeconds >= timeout) {
        const wall = elapsed();
        const stretched = wall > timeout + 1 ? ` (${wall} s on the clock: the host was busier than its CPUs, so the timeout stretched)` : "";
        return fail(`timed out: no sign of userspace after ${timeout} s${stretched}: ${explainFailure(await readTail(o.serialLog))}`);
      }
    }
  } finally {
    stop.abort("boot test over"); // SIGTERM, then SIGKILL for the whole process group
    await qemu;
    o.signal?.removeEventListener("abort", forwardAbort);
  }

  function fail(reason: string): WatchResult {
    const seconds = elapsed();
    log.line(`boot: failed after ${seconds} s: ${reason}`);
    return { ok: false, seconds, reason };
  }
}
