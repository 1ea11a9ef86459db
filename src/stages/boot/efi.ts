/**
 * UEFI boot files from the build host's Debian packages: shim signed by Microsoft's UEFI CA
 * (shim-signed), which verifies Debian's signed GRUB (grub-efi-amd64-signed), which verifies the
 * Debian kernel. Installed at the removable-media path EFI/BOOT/BOOTX64.EFI, so firmware boots
 * them with no NVRAM entry; fbx64.efi is left out on purpose (shim would run it, write boot
 * entries and reboot).
 *
 * FAT images are made with mkfs.vfat and filled with mtools: this machine's kernel has no vfat
 * (docs/architecture.md#host-facts-the-pipeline-is-built-around), and nothing needs mounting anyway.
 */
import type { ExecResult } from "../../host/exec.js";

export const EFI_FILES = {
  shim: "/usr/lib/shim/shimx64.efi.signed",
  mokManager: "/usr/lib/shim/mmx64.efi.signed",
  /** Prefix /EFI/debian; its memdisk config reads $prefix/grub.cfg (a stub on the ESP). */
  grubDisk: "/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed",
  /** Prefix /boot/grub on the medium found by /.disk/info; reads /boot/grub/grub.cfg there. */
  grubCd: "/usr/lib/grub/x86_64-efi-signed/gcdx64.efi.signed",
} as const;

/** The files of the removable-media boot path, for a disk (grubDisk) or a CD (grubCd). */
export function efiBootFiles(grub: string): Array<{ from: string; to: string }> {
  return [
    { from: EFI_FILES.shim, to: "/EFI/BOOT/BOOTX64.EFI" },
    { from: grub, to: "/EFI/BOOT/grubx64.efi" },
    { from: EFI_FILES.mokManager, to: "/EFI/BOOT/mmx64.efi" },
  ];
}

export interface FatImage {
  /** The image file, or the disk that holds it at `offsetSectors`. */
  file: string;
  offsetSectors?: number;
  sizeKiB: number;
  label: string;
  /** 8 hex digits: the volume serial, which fstab's UUID=XXXX-XXXX names. */
  volumeId: string;
  /** FAT32 (an ESP); otherwise mkfs.vfat picks FAT12/16 for a small image. */
  fat32?: boolean;
  /** mkfs.vfat --invariant: fixed values for its time-based fields (reproducible builds; the volume id stays `volumeId`). */
  invariant?: boolean;
  dirs: string[];
  files: Array<{ from: string; to: string }>;
}

type Exec = (argv: string[], opts?: { env?: Record<string, string> }) => Promise<ExecResult>;

/** Makes the FAT file system and copies the files in. A new standalone image is created (-C). */
export async function writeFatImage(exec: Exec, f: FatImage): Promise<void> {
  // One sector per cluster keeps a 128 MiB FAT32 above its minimum cluster count.
  // prettier-ignore
  await exec(["mkfs.vfat", ...(f.invariant ? ["--invariant"] : []), ...(f.offsetSectors === undefined ? ["-C"] : [`--offset=${f.offsetSectors}`]),
              ...(f.fat32 ? ["-F", "32", "-s", "1"] : []), "-n", f.label, "-i", f.volumeId, f.file, String(f.sizeKiB)]);
  const image = f.offsetSectors === undefined ? f.file : `${f.file}@@${f.offsetSectors * 512}`;
  // mtools checks the boot sector's geometry against a floppy's unless told not to. FAT times are
  // local times: in UTC, the same SOURCE_DATE_EPOCH gives the same bytes in every time zone.
  const env = { MTOOLS_SKIP_CHECK: "1", TZ: "UTC" };
  if (f.dirs.length > 0) await exec(["mmd", "-i", image, ...f.dirs.map((d) => `::${d}`)], { env });
  for (const file of f.files) await exec(["mcopy", "-i", image, file.from, `::${file.to}`], { env });
}

/** "1A2B3C4D" → "1A2B-3C4D", the UUID blkid and fstab use for a FAT file system. */
export function fatUuid(volumeId: string): string {
  return `${volumeId.slice(0, 4)}-${volumeId.slice(4)}`.toUpperCase();
}
