/**
 * Which qemu accelerator a boot test uses.
 *
 * KVM only when /dev/kvm opens read-write AND /proc/cpuinfo shows vmx (Intel) or svm (AMD).
 * The device alone proves nothing: on Kiln's build VMs /dev/kvm exists and qemu accepts
 * `-accel kvm`, SeaBIOS even runs, but without nested virtualization (no vmx in cpuinfo) the
 * Linux guest hangs right after "Probing EDD" (docs/architecture.md#host-facts-the-pipeline-is-built-around). A hang costs the whole boot
 * timeout, so without both signs we use TCG, which is slower (30-150 s per boot) but always
 * works. KILN_ACCEL=tcg|kvm overrides the probe either way.
 */
import { constants } from "node:fs";
import { access, readFile } from "node:fs/promises";
import { KilnError } from "../errors.js";

export type Accel = "kvm" | "tcg";

export interface AccelChoice {
  accel: Accel;
  /** Why, for the log. */
  why: string;
}

export interface AccelFacts {
  /** KILN_ACCEL, if set. */
  override?: string;
  /** /dev/kvm can be opened read-write. */
  kvmDevice: boolean;
  /** Contents of /proc/cpuinfo. */
  cpuinfo: string;
}

/** Pure decision, so it can be tested with made-up hosts. */
export function chooseAccel(facts: AccelFacts): AccelChoice {
  if (facts.override !== undefined && facts.override !== "") {
    if (facts.override === "kvm" || facts.override === "tcg") {
      return { accel: facts.override, why: `KILN_ACCEL=${facts.override}` };
    }
    throw new KilnError("USAGE", `KILN_ACCEL=${facts.override}: use "tcg" or "kvm" (or unset it to probe)`);
  }
  const virt = /^flags\s*:.*\b(vmx|svm)\b/m.test(facts.cpuinfo);
  if (facts.kvmDevice && virt) return { accel: "kvm", why: "/dev/kvm is usable and the CPU has vmx/svm" };
  if (!facts.kvmDevice) return { accel: "tcg", why: "/dev/kvm is missing or not accessible" };
  return { accel: "tcg", why: "/dev/kvm exists, but /proc/cpuinfo has no vmx/svm: Linux guests hang under such KVM" };
}

/** Probes this host. */
export async function detectAccel(env: NodeJS.ProcessEnv = process.env): Promise<AccelChoice> {
  const kvmDevice = await access("/dev/kvm", constants.R_OK | constants.W_OK).then(
    () => true,
    () => false,
  );
  const cpuinfo = await readFile("/proc/cpuinfo", "utf8").catch(() => "");
  return chooseAccel({ override: env.KILN_ACCEL, kvmDevice, cpuinfo });
}

/** qemu arguments for the accelerator: the host CPU under KVM, every TCG feature otherwise. */
export function accelArgs(accel: Accel): string[] {
  return accel === "kvm" ? ["-accel", "kvm", "-cpu", "host"] : ["-accel", "tcg,thread=multi", "-cpu", "max"];
}
