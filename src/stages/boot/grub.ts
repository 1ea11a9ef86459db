/**
 * GRUB for Kiln's disks and ISOs, from the build host's Debian packages (never the image's: the
 * image stays as the recipe made it):
 *  - BIOS: grub-mkimage's i386-pc core image (i386-pc-eltorito on an ISO) with a small embedded
 *    config that finds the root, and for disks the MBR boot sector boot.img written by hand,
 *    the way grub-bios-setup does it, so no loop device is needed;
 *  - UEFI: Debian's signed shim and GRUB (efi.ts), so machines with Secure Boot on boot too;
 *  - one grub.cfg, read by both.
 *
 * The menu entry has a fixed shape that `kiln verify` relies on to add its test words through
 * GRUB's editor (see GRUB_EDITOR_LINES_TO_LINUX): the `linux` line comes first in the entry.
 */
import { readFile, writeFile } from "node:fs/promises";
import type { ExecResult } from "../../host/exec.js";

export const GRUB_I386_PC = "/usr/lib/grub/i386-pc";

/**
 * In GRUB 2.06's entry editor (key `e`), the cursor starts on a `setparams '<title>'` line,
 * followed by the rest of the `menuentry … {` line (empty) and then the entry's first line,
 * which in Kiln's menus is `linux`: two "next line" presses (Ctrl-N) reach it.
 */
export const GRUB_EDITOR_LINES_TO_LINUX = 2;

/** Modules built into the BIOS core images; the rest are copied to /boot/grub/i386-pc. */
const BIOS_DISK_MODULES = ["biosdisk", "part_gpt", "part_msdos", "ext2", "search", "search_fs_uuid", "search_fs_file", "normal", "configfile", "linux", "test", "echo", "serial", "terminal", "terminfo"];
const BIOS_CD_MODULES = ["biosdisk", "iso9660", "part_msdos", "part_gpt", "search", "search_fs_file", "search_fs_uuid", "normal", "configfile", "linux", "test", "echo", "serial", "terminal", "terminfo", "probe"];

/**
 * A kernel command-line word as GRUB script text. Recipe words have no spaces, quotes or
 * backslashes (schema CMDLINE_WORD), so single quotes make any other character literal
 * (`$`, `;`, `{` …); GRUB drops the quotes and the kernel gets the word as written.
 */
export function grubWord(word: string): string {
  if (/['\s\\]/.test(word)) throw new Error(`grubWord: ${JSON.stringify(word)} has a quote, space or backslash`);
  return /^[A-Za-z0-9_.,:=/+@%-]+$/.test(word) ? word : `'${word}'`;
}

const SERIAL = `# The serial console as well as the screen (BIOS; UEFI firmware mirrors its console itself).
if [ "$grub_platform" = pc ]; then
	serial --unit=0 --speed=115200
	terminal_input serial console
	terminal_output serial console
fi`;

export interface DiskMenu {
  title: string;
  rootUuid: string;
  kernelVersion: string;
  /** Words after root=UUID=… ro. */
  cmdline: string[];
}

/** /boot/grub/grub.cfg of a disk: BIOS GRUB reads it directly, UEFI GRUB through the ESP's stub. */
export function diskGrubCfg(m: DiskMenu): string {
  const linux = [`/boot/vmlinuz-${m.kernelVersion}`, `root=UUID=${m.rootUuid}`, "ro", ...m.cmdline].map(grubWord).join(" ");
  return `# Written by Kiln. The root file system is found by its UUID on BIOS and UEFI alike.
set default=0
set timeout=5
search --no-floppy --fs-uuid --set=root ${m.rootUuid}
${SERIAL}
menuentry '${m.title}' --id kiln {
	linux ${linux}
	initrd /boot/initrd.img-${m.kernelVersion}
}
`;
}

/** The ESP's EFI/debian/grub.cfg: Debian's signed GRUB has /EFI/debian as its prefix and reads this. */
export function espStubCfg(rootUuid: string): string {
  return `search --no-floppy --fs-uuid --set=root ${rootUuid}
set prefix=($root)/boot/grub
configfile $prefix/grub.cfg
`;
}

export interface LiveMenu {
  title: string;
  /** A file only this ISO has (/.disk/kiln-<id>), to find the medium by. */
  idFile: string;
  cmdline: string[];
}

/**
 * /boot/grub/grub.cfg of a live ISO. GRUB reads the medium's file-system UUID at boot (probe) and
 * hands it to the initramfs as root=live:UUID=…, so a re-mastered ISO (kiln iso --seed) boots
 * with the same menu whatever its label.
 */
export function liveGrubCfg(m: LiveMenu): string {
  const words = m.cmdline.map(grubWord).join(" ");
  return `# Written by Kiln. The live root is /live/filesystem.squashfs on this medium (CD or USB).
set default=0
set timeout=5
search --no-floppy --set=root --file ${m.idFile}
probe --fs-uuid --set=kiln_medium $root
export kiln_medium
${SERIAL}
menuentry '${m.title}' --id kiln-live {
	linux /live/vmlinuz root=live:UUID=$kiln_medium${words ? ` ${words}` : ""}
	initrd /live/initrd.img
}
`;
}

type Exec = (argv: string[]) => Promise<ExecResult>;

/** Builds a BIOS core image whose embedded config runs `early` (finding the root) before normal mode. */
export async function makeBiosCore(exec: Exec, o: { out: string; early: string; earlyFile: string; cdrom: boolean }): Promise<void> {
  await writeFile(o.earlyFile, o.early);
  // prettier-ignore
  await exec(["grub-mkimage", "-O", o.cdrom ? "i386-pc-eltorito" : "i386-pc", "-d", GRUB_I386_PC, "-o", o.out,
              "-c", o.earlyFile, "-p", "/boot/grub", ...(o.cdrom ? BIOS_CD_MODULES : BIOS_DISK_MODULES)]);
}

/**
 * The MBR's first 440 bytes from GRUB's boot.img, patched as grub-bios-setup patches them: the
 * LBA of core.img's first sector, "boot drive = the one the BIOS booted" (0xff), and the
 * floppy-probe jump replaced by NOPs. The disk signature and partition table (440–511) stay.
 */
export function patchBootSector(mbr: Buffer, bootImg: Buffer, coreLba: number): Buffer {
  if (mbr.length !== 512 || bootImg.length !== 512) throw new Error("patchBootSector: both sectors must be 512 bytes");
  const out = Buffer.from(mbr);
  bootImg.copy(out, 0, 0, 440);
  out.writeBigUInt64LE(BigInt(coreLba), 0x5c); // GRUB_BOOT_MACHINE_KERNEL_SECTOR
  out[0x64] = 0xff; // GRUB_BOOT_MACHINE_BOOT_DRIVE
  out[0x66] = 0x90; // GRUB_BOOT_MACHINE_DRIVE_CHECK: nop the jump
  out[0x67] = 0x90;
  return out;
}

/**
 * core.img padded to whole sectors, with the blocklist at the end of its first sector (diskboot.img)
 * saying where the rest lies: right after it, `sectors - 1` sectors loaded at segment 0x820.
 */
export function patchCoreBlocklist(core: Buffer, coreLba: number): Buffer {
  const sectors = Math.ceil(core.length / 512);
  const out = Buffer.alloc(sectors * 512);
  core.copy(out);
  const at = 512 - 12; // struct grub_boot_blocklist { u64 start; u16 len; u16 segment; }, last in the sector
  out.fill(0, at - 12, at); // the list ends with an empty entry
  out.writeBigUInt64LE(BigInt(coreLba + 1), at);
  out.writeUInt16LE(sectors - 1, at + 8);
  out.writeUInt16LE(0x820, at + 10);
  return out;
}

/** Reads boot.img and core.img and returns the patched MBR and core for a core placed at `coreLba`. */
export async function biosBootSectors(mbr: Buffer, coreFile: string, coreLba: number): Promise<{ mbr: Buffer; core: Buffer }> {
  const bootImg = await readFile(`${GRUB_I386_PC}/boot.img`);
  const core = await readFile(coreFile);
  return { mbr: patchBootSector(mbr, bootImg, coreLba), core: patchCoreBlocklist(core, coreLba) };
}
