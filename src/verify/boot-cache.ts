/**
 * Boot results are cached: a boot that passed is not made again while nothing it booted and
 * nothing that booted it changed. Its key is the sha256 of a record (canonical JSON, as the
 * stage keys) of:
 *   - what was booted: the sha256 of each file the guest got (kernel, initrd, squashfs and
 *     boot-params for pxe; the disk or the ISO for the others), and the target and flavor;
 *   - the harness: Kiln's verify code and initramfs hook (one digest over both), the qemu
 *     version and the firmware packages (SeaBIOS, OVMF).
 * Only passing boots are kept: a failure is worth seeing again. Entries live in
 * `<cache>/boots/<key>/` (result.json and the serial log of the boot that passed); `kiln cache
 * prune` does not count them (a few KiB each).
 */
import { copyFile, mkdir, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { canonicalJson, fileDigest, sha256Hex } from "../cache/key.js";
import { initramfsDigest } from "../engine/initramfs-digest.js";
import { capture } from "../host/exec.js";
import type { VerifyEntry } from "../artifacts/result.js";

export interface BootKeyRecord {
  flavor: string;
  target: string;
  /** Role (kernel, initrd, squashfs, boot-params, disk, iso) → sha256 of the booted file. */
  booted: Record<string, string>;
  /** Verify code + initramfs hook. */
  harness: string;
  qemu: string;
  firmware: string;
}

export function bootKey(r: BootKeyRecord): string {
  return sha256Hex(canonicalJson(r));
}

/** The host side of a boot's key: the same for every boot of a run, so computed once. */
export interface BootHarness {
  harness: string;
  qemu: string;
  firmware: string;
}

export async function bootHarness(): Promise<BootHarness> {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const parts: string[] = [];
  for (const name of (await readdir(here)).filter((n) => n.endsWith(".js")).sort()) parts.push(`${name} ${await fileDigest(path.join(here, name))}`);
  parts.push(`initramfs ${await initramfsDigest()}`);
  const qemu = (await capture(["qemu-system-x86_64", "--version"]).catch(() => "unknown")).split("\n")[0]!.trim();
  // Firmware is packaged apart from qemu: a new OVMF can change what a UEFI boot does.
  const firmware = await capture(["dpkg-query", "-W", "-f", "${Package}=${Version} ", "seabios", "ovmf", "ipxe-qemu"], { okCodes: [0, 1] }).catch(() => "unknown");
  return { harness: `sha256:${sha256Hex(parts.join("\n"))}`, qemu, firmware: firmware.trim() };
}

/** sha256 of each booted file, by role. */
export async function bootedDigests(files: Record<string, string>): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const [role, file] of Object.entries(files)) out[role] = `sha256:${await fileDigest(file)}`;
  return out;
}

export class BootResultCache {
  constructor(readonly dir: string) {}

  /** The passing result stored for this key, its serial log copied to `serialLog`; undefined when none. */
  async get(key: string, serialLog: string): Promise<VerifyEntry | undefined> {
    const entry = path.join(this.dir, key);
    try {
      const stored = JSON.parse(await readFile(path.join(entry, "result.json"), "utf8")) as VerifyEntry;
      if (!stored.ok) return undefined;
      await mkdir(path.dirname(serialLog), { recursive: true });
      await copyFile(path.join(entry, "serial.log"), serialLog).catch(() => {});
      return stored;
    } catch {
      return undefined;
    }
  }

  /** Keeps a passing result (whole, then renamed in, like cache entries). */
  async put(key: string, entry: VerifyEntry, serialLog: string, record: BootKeyRecord): Promise<void> {
    if (!entry.ok) return;
    const tmp = path.join(this.dir, `.tmp-${key}-${process.pid}`);
    await mkdir(tmp, { recursive: true });
    await writeFile(path.join(tmp, "result.json"), JSON.stringify(entry, null, 1) + "\n");
    await writeFile(path.join(tmp, "key.json"), JSON.stringify(JSON.parse(canonicalJson(record)), null, 1) + "\n");
    await copyFile(serialLog, path.join(tmp, "serial.log")).catch(() => {});
    await rename(tmp, path.join(this.dir, key)).catch(async () => {
      await rm(tmp, { recursive: true, force: true }); // another run kept it first
    });
  }
}
