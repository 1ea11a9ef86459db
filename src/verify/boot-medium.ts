/**
 * Boots a disk image or an ISO the way a machine does: firmware (SeaBIOS, or OVMF for UEFI, with
 * Secure Boot enforced and Microsoft's keys enrolled when Debian's ovmf provides that variant),
 * then the image's own GRUB, its menu entry, its kernel and initrd. Passes on the same computed
 * marker as the diskless boot (cmdline.ts).
 *
 * The marker has to reach the kernel command line, which the image keeps in its grub.cfg. The
 * shipped file is not touched: the test types the marker words at GRUB's menu through the serial
 * console (`e`, down to the `linux` line, end of line, the words, Ctrl-X), as an operator would,
 * so the boot runs the menu entry as shipped plus those words, and nothing test-only is in the
 * image. A disk boots from a throwaway qcow2 overlay, so the artifact stays byte for byte.
 */
import { copyFile, mkdtemp, readFile, rm, stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { exec, nullLog, type LogSink } from "../host/exec.js";
import { GRUB_EDITOR_LINES_TO_LINUX } from "../stages/boot/grub.js";
import { accelArgs, detectAccel } from "./accel.js";
import { GUEST_CPUS, watchBoot } from "./boot.js";
import { createMarker, grubMarkerText, hostnameAfterMarker } from "./cmdline.js";
import { plainLines, stutterTolerant } from "./serial-log.js";
import { SerialConsole } from "./serial-console.js";

export type Firmware = "bios" | "uefi";

export interface MediumBootOptions {
  /** disk: a qcow2 (booted through an overlay); cdrom: an ISO in a CD drive; usb: an ISO as a USB stick. */
  medium: { kind: "disk" | "cdrom" | "usb"; file: string };
  firmware: Firmware;
  serialLog: string;
  timeoutSeconds?: number;
  signal?: AbortSignal;
  log?: LogSink;
  workDir?: string;
  memoryMiB?: number;
  /** Leave cloud-init on and report the guest's hostname (a seeded ISO). */
  cloudInit?: boolean;
}

export interface MediumBootResult {
  ok: boolean;
  seconds: number;
  reason?: string;
  secureBoot?: boolean;
  hostname?: string;
}

const OVMF = {
  secureCode: "/usr/share/OVMF/OVMF_CODE_4M.ms.fd",
  secureVars: "/usr/share/OVMF/OVMF_VARS_4M.ms.fd",
  plain: "/usr/share/ovmf/OVMF.fd",
};

const CTRL = { e: "\x05", n: "\x0e", x: "\x18" };
/** GRUB 2.06's menu and entry editor, as their help text says on the serial console. */
const GRUB_MENU = new RegExp(["to select which entry is highlighted", "will be executed automatically"].map(stutterTolerant).join("|"));
const GRUB_EDITOR = new RegExp(["Emacs-like screen editing", "Press Ctrl-x or F10 to boot"].map(stutterTolerant).join("|"));

export async function bootMedium(o: MediumBootOptions): Promise<MediumBootResult> {
  const log = o.log ?? nullLog;
  const { accel, why } = await detectAccel();
  log.line(`boot: accelerator ${accel} (${why}); ${o.firmware} firmware, ${o.medium.kind} ${o.medium.file}`);
  const scratch = await mkdtemp(path.join(o.workDir ?? os.tmpdir(), "boot-"));
  // A unix socket path has room for 107 bytes.
  const socketDir = path.join(scratch, "serial.sock").length < 100 ? scratch : await mkdtemp(path.join(os.tmpdir(), "kiln-serial-"));
  const socket = path.join(socketDir, "serial.sock");
  let keyboard: SerialConsole | undefined;
  try {
    const firmware = await firmwareArgs(o.firmware, scratch);
    const medium = await mediumArgs(o.medium, scratch, log, o.workDir);
    const marker = createMarker();
    const words = grubMarkerText(marker, { cloudInit: o.cloudInit, hostname: o.cloudInit });
    // prettier-ignore
    const argv = ["qemu-system-x86_64", ...accelArgs(accel), "-smp", String(GUEST_CPUS), "-m", String(o.memoryMiB ?? 2048),
      ...firmware.args, "-display", "none", "-no-reboot", "-monitor", "none",
      "-chardev", `socket,id=serial0,path=${socket},server=on,wait=off,logfile=${o.serialLog},logappend=off`,
      "-serial", "chardev:serial0", "-nic", "user,model=virtio-net-pci", ...medium];

    let step = "menu" as "menu" | "editor" | "booting";
    let seen = "";
    const r = await watchBoot({
      argv,
      marker,
      serialLog: o.serialLog,
      timeoutSeconds: o.timeoutSeconds,
      signal: o.signal,
      log,
      workDir: o.workDir,
      interact: async (text) => {
        if (step === "booting") return undefined;
        seen = (seen + plainLines(text).join("\n")).slice(-8192);
        keyboard ??= await SerialConsole.connect(socket, o.signal);
        if (step === "menu" && GRUB_MENU.test(seen)) {
          log.line("boot: GRUB's menu is up; opening the entry's editor");
          step = "editor";
          seen = "";
          await keyboard.type("e");
        } else if (step === "editor" && GRUB_EDITOR.test(seen)) {
          log.line(`boot: adding to the linux line: ${words}`);
          step = "booting";
          await keyboard.type(CTRL.n.repeat(GRUB_EDITOR_LINES_TO_LINUX) + CTRL.e + " " + words + CTRL.x);
        }
        return undefined;
      },
    });
    const tail = r.tail ?? "";
    const result: MediumBootResult = { ok: r.ok, seconds: r.seconds, ...(r.reason ? { reason: r.reason } : {}) };
    if (step === "menu" && !r.ok) result.reason = `GRUB's menu never came up on the serial console (${r.reason ?? "no output"})`;
    if (step === "editor" && !r.ok) result.reason = `GRUB's entry editor never opened after the key e (${r.reason ?? "no output"})`;
    if (o.firmware === "uefi") result.secureBoot = firmware.secureBoot && /Secure boot enabled/i.test(await readAll(o.serialLog));
    if (o.cloudInit && r.ok) {
      const hostname = hostnameAfterMarker(tail, marker);
      if (hostname) result.hostname = hostname;
    }
    return result;
  } finally {
    await keyboard?.release();
    await rm(scratch, { recursive: true, force: true });
    if (socketDir !== scratch) await rm(socketDir, { recursive: true, force: true });
  }
}

async function readAll(file: string): Promise<string> {
  return readFile(file, "utf8").catch(() => "");
}

/** SeaBIOS on qemu's default PC; for UEFI a Q35 with SMM and Secure Boot when the firmware has it. */
async function firmwareArgs(fw: Firmware, scratch: string): Promise<{ args: string[]; secureBoot: boolean }> {
  if (fw === "bios") return { args: ["-machine", "pc"], secureBoot: false };
  const exists = async (f: string) => (await stat(f).catch(() => undefined)) !== undefined;
  if ((await exists(OVMF.secureCode)) && (await exists(OVMF.secureVars))) {
    const vars = path.join(scratch, "OVMF_VARS.fd"); // the firmware writes its variables: a copy
    await copyFile(OVMF.secureVars, vars);
    // prettier-ignore
    return { secureBoot: true, args: ["-machine", "q35,smm=on", "-global", "driver=cfi.pflash01,property=secure,value=on",
      "-drive", `if=pflash,format=raw,unit=0,readonly=on,file=${OVMF.secureCode}`, "-drive", `if=pflash,format=raw,unit=1,file=${vars}`] };
  }
  return { secureBoot: false, args: ["-machine", "q35", "-bios", OVMF.plain] };
}

async function mediumArgs(m: MediumBootOptions["medium"], scratch: string, log: LogSink, workDir?: string): Promise<string[]> {
  const file = path.resolve(m.file);
  if (m.kind === "disk") {
    // The guest writes (journal, machine-id, logs) go to a throwaway overlay, never the artifact.
    const overlay = path.join(scratch, "overlay.qcow2");
    await exec(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", file, overlay], { log, workDir });
    return ["-drive", `file=${overlay},if=virtio,format=qcow2`];
  }
  if (m.kind === "cdrom") return ["-drive", `file=${file},media=cdrom,readonly=on`];
  // prettier-ignore
  return ["-device", "qemu-xhci,id=xhci", "-drive", `if=none,id=stick,format=raw,readonly=on,file=${file}`,
          "-device", "usb-storage,bus=xhci.0,drive=stick"];
}
