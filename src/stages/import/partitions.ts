/**
 * Which partition of a disk image is the root. Cloud images put more than the root on the disk
 * (Debian and Ubuntu: root as partition 1, BIOS boot 14, ESP 15, sometimes /boot 16), so the
 * choice is made by rule, in this order:
 *
 *  1. A partition typed "Linux root (<arch>)" by the Discoverable Partitions Specification
 *     (GPT): the image says which one is root. With several (A/B images) the lowest-numbered one
 *     without the "no-auto" attribute (GPT bit 63), as systemd-gpt-auto-generator would.
 *  2. Otherwise, a "Linux filesystem" partition (GPT 0FC63DAF…, MBR 0x83) holding a filesystem we
 *     can mount: the largest, since a separate /boot typed the same way is always the smaller.
 *  3. Otherwise, any other partition not known to be something else (ESP, swap, LVM, RAID, LUKS,
 *     /boot, /home …) that holds ext2/3/4, xfs or btrfs: the largest. This catches images whose
 *     tool typed the root "Microsoft basic data".
 *
 * Anything else is refused with the partitions listed, so the user sees why.
 */
import type { RootFsType } from "./detect.js";

export interface Partition {
  /** Partition number as the kernel would name it (sda<number>). */
  number: number;
  /** Byte offset and length within the image. */
  start: number;
  size: number;
  /** GPT type GUID (upper case) or MBR type byte in hex ("83"). */
  type: string;
  name?: string;
  /** sfdisk's GPT attribute string, e.g. "RequiredPartition GUID:63". */
  attrs?: string;
}

export interface PartitionTable {
  label: "gpt" | "dos" | string;
  sectorSize: number;
  partitions: Partition[];
}

interface SfdiskJson {
  partitiontable?: {
    label?: string;
    device?: string;
    sectorsize?: number;
    partitions?: Array<{ node?: string; start?: number; size?: number; type?: string; name?: string; attrs?: string }>;
  };
}

/** Reads `sfdisk --json` output; start and size come out in bytes. */
export function parseSfdiskJson(text: string): PartitionTable {
  const t = (JSON.parse(text) as SfdiskJson).partitiontable;
  if (!t) throw new Error("sfdisk --json printed no partitiontable");
  const ss = t.sectorsize ?? 512;
  const partitions = (t.partitions ?? []).map((p, i): Partition => {
    // sfdisk names partitions after the device: "disk.raw3", or "disk1p3" when it ends in a digit.
    const m = /(\d+)$/.exec(p.node ?? "");
    return {
      number: m ? Number(m[1]) : i + 1,
      start: (p.start ?? 0) * ss,
      size: (p.size ?? 0) * ss,
      type: (p.type ?? "").toUpperCase(),
      ...(p.name !== undefined ? { name: p.name } : {}),
      ...(p.attrs !== undefined ? { attrs: p.attrs } : {}),
    };
  });
  return { label: t.label ?? "unknown", sectorSize: ss, partitions };
}

const GPT_ROOT: Record<string, string> = {
  "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709": "Linux root (x86-64)",
  "44479540-F297-41B2-9AF7-D131D5F0458A": "Linux root (x86)",
  "B921B045-1DF0-41C3-AF44-4C6F280D3FAE": "Linux root (ARM-64)",
  "69DAD710-2CE4-4E3C-B16C-21A1D49ABED3": "Linux root (ARM)",
  "72EC70A6-CF74-40E6-BD49-4BDA08E8F224": "Linux root (RISC-V-64)",
  "60D5A7FE-8E7D-435C-B714-3DD8162144E1": "Linux root (RISC-V-32)",
  "C31C45E6-3F39-412E-80FB-4809C4980599": "Linux root (PPC64LE)",
  "912ADE1D-A839-4913-8964-A10EEE08FBD2": "Linux root (PPC64)",
  "5EEAD9A9-FE09-4A1E-A1D7-520D00531306": "Linux root (S390X)",
  "77055800-792C-4F94-B39A-98C91B762BB6": "Linux root (LoongArch-64)",
};

const LINUX_FS: Record<string, string> = {
  "0FC63DAF-8483-4772-8E79-3D69D8477DE4": "Linux filesystem",
  "83": "Linux",
};

/** Types that are never the root, by what they are. */
const NOT_ROOT: Record<string, string> = {
  "C12A7328-F81F-11D2-BA4B-00A0C93EC93B": "EFI System",
  "21686148-6449-6E6F-744E-656564454649": "BIOS boot",
  "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F": "Linux swap",
  "E6D6D379-F507-44C2-A23C-238F2A3DF928": "Linux LVM",
  "A19D880F-05FC-4D3B-A006-743F0F84911E": "Linux RAID",
  "CA7D7CCB-63ED-4C53-861C-1742536059CC": "Linux LUKS",
  "BC13C2FF-59E6-4262-A352-B275FD6F7172": "Linux extended boot",
  "933AC7E1-2EB4-4F13-B844-0E14E2AEF915": "Linux home",
  "3B8F8425-20E0-4F3B-907F-1A25A76F98E8": "Linux server data",
  "4D21B016-B534-45C2-A9FB-5C16E091FD2D": "Linux variable data",
  "7EC6F557-3BC5-4ACA-B293-16EF5DF639D1": "Linux temporary data",
  "8484680C-9521-48C6-9C11-B0720656F69E": "Linux /usr (x86-64)",
  "B0E01050-EE5F-4390-949A-9101B17104E9": "Linux /usr (ARM-64)",
  "8DA63339-0007-60C0-C436-083AC8230908": "Linux reserved",
  "9E1A2D38-C612-4316-AA26-8B49521E5A8B": "PowerPC PReP boot",
  EF: "EFI (FAT)",
  "82": "Linux swap",
  "8E": "Linux LVM",
  FD: "Linux raid autodetect",
  EA: "Linux extended boot",
  "5": "Extended",
  F: "W95 Ext'd (LBA)",
  "85": "Linux extended",
};

export function describePartitionType(type: string): string {
  const t = type.toUpperCase();
  return GPT_ROOT[t] ?? LINUX_FS[t] ?? NOT_ROOT[t] ?? (/^[0-9A-F]{1,2}$/.test(t) ? `type 0x${t.toLowerCase()}` : `type ${t}`);
}

/** GPT attribute bit 63, "no-auto" in the DPS; sfdisk prints bits as "GUID:60,63". */
function isNoAuto(p: Partition): boolean {
  const bits = /GUID:([\d,]+)/.exec(p.attrs ?? "")?.[1]?.split(",") ?? [];
  return bits.includes("63");
}

export type RootChoice = { partition: Partition; fs: RootFsType; rule: string } | { error: string };

/**
 * Chooses the root partition by the rules at the top of this file. `fsOf` says which mountable
 * filesystem a partition holds (read from its superblock), or undefined.
 */
export function chooseRootPartition(table: PartitionTable, fsOf: (p: Partition) => RootFsType | undefined): RootChoice {
  const parts = [...table.partitions].sort((a, b) => a.number - b.number);
  if (parts.length === 0) return { error: `has a ${table.label} partition table with no partitions` };

  const roots = parts.filter((p) => GPT_ROOT[p.type] !== undefined);
  if (roots.length > 0) {
    const auto = roots.filter((p) => !isNoAuto(p));
    const p = auto[0] ?? roots[0]!;
    const fs = fsOf(p);
    if (!fs) {
      return {
        error: `partition ${p.number} is typed ${GPT_ROOT[p.type]} but holds no ext2/3/4, xfs or btrfs filesystem (an encrypted or verity-protected root cannot be imported)`,
      };
    }
    const rule = roots.length === 1 ? `the only partition typed ${GPT_ROOT[p.type]}` : `the first of ${roots.length} partitions typed Linux root that is not marked no-auto`;
    return { partition: p, fs, rule };
  }

  const largest = (candidates: Partition[]) => candidates.reduce((best, p) => (p.size > best.size ? p : best));
  const linux = parts.filter((p) => LINUX_FS[p.type] !== undefined && fsOf(p));
  if (linux.length > 0) {
    const p = largest(linux);
    const rule = linux.length === 1 ? `the only ${LINUX_FS[p.type]} partition with a filesystem` : `the largest of ${linux.length} ${LINUX_FS[p.type]} partitions`;
    return { partition: p, fs: fsOf(p)!, rule };
  }

  const others = parts.filter((p) => NOT_ROOT[p.type] === undefined && LINUX_FS[p.type] === undefined && fsOf(p));
  if (others.length > 0) {
    const p = largest(others);
    return { partition: p, fs: fsOf(p)!, rule: `no partition is typed Linux; the largest partition holding a ${fsOf(p)} filesystem` };
  }

  const seen = parts.map((p) => `${p.number} ${describePartitionType(p.type)}${fsOf(p) ? ` (${fsOf(p)})` : ""}`).join(", ");
  return {
    error: `no partition holds a Linux root filesystem (partitions: ${seen}); Kiln imports a root that is a plain ext2/3/4, xfs or btrfs partition (LVM, RAID and LUKS are not supported)`,
  };
}
