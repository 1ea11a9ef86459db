/**
 * The qcow2 disk's partition layout, computed without touching anything (unit-tested):
 *
 *   1 MiB  GPT (protective MBR with GRUB's boot.img, header, entries)
 *   p1     BIOS boot partition, 1 MiB: GRUB's core.img (GPT has no MBR gap to embed it in)
 *   p2     EFI system partition, 128 MiB FAT32: shim + signed GRUB
 *   p3     root, ext4, the image tree: what `disk.size` leaves, or the content plus headroom
 *   p4…    the recipe's extra partitions (empty ext4)
 *   1 MiB  backup GPT
 *
 * Every partition starts on a MiB boundary. The root comes before the extras but after the boot
 * partitions; with no extras it is last, so cloud-init's growpart can grow it into a bigger disk.
 */
import { KilnError } from "../../errors.js";

export const MIB = 1024 * 1024;
const SECTOR = 512;

/** GPT type GUIDs (sfdisk's names for them in comments). */
export const PARTITION_TYPES = {
  bios: "21686148-6449-6E6F-744E-656564454649", // BIOS boot
  esp: "C12A7328-F81F-11D2-BA4B-00A0C93EC93B", // EFI System
  root: "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709", // Linux root (x86-64), per the Discoverable Partitions Spec
  data: "0FC63DAF-8483-4772-8E79-3D69D8477DE4", // Linux filesystem
} as const;

export interface Partition {
  number: number;
  name: string;
  role: keyof typeof PARTITION_TYPES;
  /** Offsets in bytes from the start of the disk. */
  start: number;
  size: number;
  mountpoint?: string;
}

export interface DiskLayout {
  size: number;
  partitions: Partition[];
}

/** How much root partition a tree needs: its blocks plus 25 % and 256 MiB, in whole MiB. */
export function rootSizeFor(usedBytes: number): number {
  return Math.ceil((usedBytes * 1.25 + 256 * MIB) / MIB) * MIB;
}

export const ESP_SIZE = 128 * MIB;

export function planDiskLayout(o: { rootNeeds: number; diskSize?: number; extras: Array<{ name: string; size: number; mountpoint: string }> }): DiskLayout {
  const parts: Partition[] = [];
  let at = MIB;
  const push = (name: string, role: Partition["role"], size: number, mountpoint?: string) => {
    parts.push({ number: parts.length + 1, name, role, start: at, size, ...(mountpoint ? { mountpoint } : {}) });
    at += size;
  };
  push("bios", "bios", MIB);
  push("esp", "esp", ESP_SIZE, "/boot/efi");
  const extras = o.extras.reduce((sum, e) => sum + e.size, 0);
  let root = o.rootNeeds;
  if (o.diskSize !== undefined) {
    const left = o.diskSize - at - extras - MIB;
    if (left < o.rootNeeds) {
      throw new KilnError("STAGE_FAILED", `disk.size: ${Math.round(o.diskSize / MIB)} MiB is too small: the root needs ${Math.round(o.rootNeeds / MIB)} MiB after ${Math.round((at + extras + MIB) / MIB)} MiB of boot and extra partitions`, {
        hint: `give at least ${Math.ceil((o.rootNeeds + at + extras + MIB) / MIB / 1024)}G, or leave disk.size out`,
      });
    }
    root = Math.floor(left / MIB) * MIB;
  }
  push("root", "root", root, "/");
  for (const e of o.extras) push(e.name, "data", e.size, e.mountpoint);
  return { size: o.diskSize ?? at + MIB, partitions: parts };
}

/**
 * sfdisk's input for the layout (sizes in sectors). `guids` fixes the GPT disk GUID and each
 * partition's unique GUID (by partition name); without them sfdisk draws random ones.
 */
export function sfdiskScript(layout: DiskLayout, guids?: { disk: string; partitions: Record<string, string> }): string {
  const lines = ["label: gpt", ...(guids ? [`label-id: ${guids.disk}`] : []), `first-lba: ${MIB / SECTOR}`];
  for (const p of layout.partitions) {
    const uuid = guids?.partitions[p.name];
    lines.push(`start=${p.start / SECTOR}, size=${p.size / SECTOR}, type=${PARTITION_TYPES[p.role]}, name="${p.name}"${uuid ? `, uuid=${uuid}` : ""}`);
  }
  return lines.join("\n") + "\n";
}
