/**
 * Live ISO images with xorriso: one hybrid image that boots as a CD and from a USB stick, on BIOS
 * (GRUB's El Torito core, boot_hybrid.img in the MBR) and UEFI (an appended EFI system partition
 * with shim and Debian's signed CD GRUB, also the El Torito EFI image). The layout is the one
 * Ubuntu's ISOs use, which `xorriso -boot_image any replay` can re-master: `kiln iso --seed` adds
 * a cloud-init seed that way, copying the squashfs, kernel and initrd across unchanged.
 *
 *   /.disk/info                  Debian's signed CD GRUB looks for it to find the medium
 *   /.disk/kiln-<id>             this ISO's own marker (the menu and BIOS core search for it)
 *   /boot/grub/grub.cfg          the menu (grub.ts liveGrubCfg)
 *   /boot/grub/i386-pc/          eltorito.img (BIOS core) and GRUB's modules
 *   /live/filesystem.squashfs    the build's squashfs, byte for byte
 *   /live/vmlinuz, initrd.img    the first flavor's boot-kernel and boot-initrd
 */
import type { ExecResult } from "../../host/exec.js";

/** GPT type of the appended partition (EFI System) and of the ISO partition (basic data), as Ubuntu's. */
const EFI_PART_TYPE = "28732ac11ff8d211ba4b00a0c93ec93b";
const ISO_PART_TYPE = "a2a0d0ebe5b9334487c068b6b72699c7";

export const LIVE_FILES = {
  squashfs: "/live/filesystem.squashfs",
  kernel: "/live/vmlinuz",
  initrd: "/live/initrd.img",
} as const;

/** An ISO 9660 volume id from the image name: d-characters only, at most 32. */
export function isoLabel(name: string): string {
  return `KILN_${name.toUpperCase().replace(/[^A-Z0-9_]/g, "_")}`.slice(0, 32);
}

type Exec = (argv: string[], opts?: { onLine?: (line: string) => boolean | void }) => Promise<ExecResult>;

export interface MasterOptions {
  out: string;
  label: string;
  /** Tree with /.disk, /boot/grub (eltorito.img inside). */
  tree: string;
  efiImage: string;
  /** Path in the ISO → host file, added without copying. */
  grafts: Record<string, string>;
  /**
   * The build's epoch (docs/reproducible.md): the volume's dates and UUID, the GPT GUIDs xorriso
   * derives from them and every file's times (the grafted files' own mtimes are the times they
   * were built). Without it xorriso uses the time of the run and random GUIDs.
   */
  epoch?: number;
}

/** xorriso's --modification-date: YYYYMMDDhhmmsscc in UTC. */
export function isoDate(epoch: number): string {
  return new Date(epoch * 1000).toISOString().replace(/[-:T]/g, "").slice(0, 14) + "00";
}

export async function masterIso(exec: Exec, o: MasterOptions): Promise<void> {
  // prettier-ignore
  const dates = o.epoch === undefined ? [] : [`--modification-date=${isoDate(o.epoch)}`, "--set_all_file_dates", `=${o.epoch}`];
  await exec(["xorriso", "-as", "mkisofs", "-r", "-V", o.label, "-o", o.out, ...dates,
    "--grub2-mbr", "/usr/lib/grub/i386-pc/boot_hybrid.img",
    "-partition_offset", "16", "--mbr-force-bootable",
    "-append_partition", "2", EFI_PART_TYPE, o.efiImage, "-appended_part_as_gpt",
    "-iso_mbr_part_type", ISO_PART_TYPE,
    "-c", "/boot.catalog",
    "-b", "/boot/grub/i386-pc/eltorito.img", "-no-emul-boot", "-boot-load-size", "4", "-boot-info-table", "--grub2-boot-info",
    "-eltorito-alt-boot", "-e", "--interval:appended_partition_2:::", "-no-emul-boot",
    "-graft-points", o.tree, ...Object.entries(o.grafts).map(([at, file]) => `${at}=${file}`)]);
}

/**
 * A copy of `iso` with more files and another volume id, its boot setup replayed (El Torito,
 * MBR, GPT, EFI partition) and every other file copied unchanged.
 */
export async function remasterIso(exec: Exec, o: { iso: string; out: string; label: string; add: Record<string, string> }): Promise<void> {
  // prettier-ignore
  await exec(["xorriso", "-indev", o.iso, "-outdev", o.out, "-boot_image", "any", "replay", "-volid", o.label,
    ...Object.entries(o.add).flatMap(([at, file]) => ["-map", file, at]), "-end"]);
}
