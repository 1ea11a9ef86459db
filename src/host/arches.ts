/**
 * Which image architectures this machine can build (IMS names: x86_64, aarch64): its own, and
 * each other one whose programs the kernel runs through qemu-user-static (a binfmt_misc handler
 * `qemu-<arch>` that is enabled). What a worker declares by default (`kiln worker --arch`).
 */
import { readFile } from "node:fs/promises";
import path from "node:path";
import { ARCHES, type Arch } from "../catalog/records.js";

const NODE_ARCH: Record<string, Arch> = { x64: "x86_64", arm64: "aarch64" };

export function nativeArch(): Arch {
  return NODE_ARCH[process.arch] ?? "x86_64";
}

/** The arches a binfmt_misc handler emulates here, besides the native one. */
export async function emulatedArches(binfmt = "/proc/sys/fs/binfmt_misc"): Promise<Arch[]> {
  const found: Arch[] = [];
  for (const arch of ARCHES) {
    if (arch === nativeArch()) continue;
    const text = await readFile(path.join(binfmt, `qemu-${arch}`), "utf8").catch(() => "");
    if (text.split("\n")[0] === "enabled") found.push(arch);
  }
  return found;
}

/** Native first: a worker prefers its own arch's jobs (it polls for the others less often). */
export async function buildableArches(binfmt?: string): Promise<Arch[]> {
  return [nativeArch(), ...(await emulatedArches(binfmt))];
}
