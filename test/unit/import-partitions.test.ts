// Choosing the root partition of a disk image: the rules of src/stages/import/partitions.ts.
import { test } from "node:test";
import assert from "node:assert/strict";
import { chooseRootPartition, parseSfdiskJson, type Partition, type PartitionTable } from "../../src/stages/import/partitions.js";
import type { RootFsType } from "../../src/stages/import/detect.js";

const MiB = 1024 * 1024;
const ROOT_X64 = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709";
const LINUX_FS = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";
const ESP = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
const BIOS = "21686148-6449-6E6F-744E-656564454649";
const LVM = "E6D6D379-F507-44C2-A23C-238F2A3DF928";
const MS_DATA = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7";

function part(number: number, type: string, sizeMiB: number, extra: Partial<Partition> = {}): Partition {
  return { number, type, start: number * 100 * MiB, size: sizeMiB * MiB, ...extra };
}

function table(label: string, ...partitions: Partition[]): PartitionTable {
  return { label, sectorSize: 512, partitions };
}

/** Every partition holds ext4 unless listed in `bare`. */
function fsExcept(...bare: number[]): (p: Partition) => RootFsType | undefined {
  return (p) => (bare.includes(p.number) ? undefined : "ext4");
}

function chosen(t: PartitionTable, fsOf = fsExcept()): number {
  const c = chooseRootPartition(t, fsOf);
  assert.ok(!("error" in c), "error" in c ? c.error : "");
  return c.partition.number;
}

void test("a partition typed Linux root wins over a larger Linux filesystem", () => {
  assert.equal(chosen(table("gpt", part(1, LINUX_FS, 900), part(2, ROOT_X64, 300), part(15, ESP, 100))), 2);
});

void test("of several root partitions, the first without the no-auto attribute", () => {
  const t = table("gpt", part(2, ROOT_X64, 300, { attrs: "RequiredPartition GUID:60,63" }), part(3, ROOT_X64, 300, { attrs: "GUID:60" }));
  assert.equal(chosen(t), 3);
  assert.match((chooseRootPartition(t, fsExcept()) as { rule: string }).rule, /first of 2 partitions typed Linux root/);
});

void test("a root-typed partition with no mountable filesystem is refused, not skipped", () => {
  const c = chooseRootPartition(table("gpt", part(1, LINUX_FS, 900), part(2, ROOT_X64, 300)), fsExcept(2));
  assert.ok("error" in c);
  assert.match(c.error, /partition 2 is typed Linux root \(x86-64\) but holds no ext2\/3\/4, xfs or btrfs filesystem/);
});

void test("Debian/Ubuntu cloud image layout: root 1, BIOS boot 14, ESP 15, /boot 16", () => {
  const t = table("gpt", part(1, LINUX_FS, 2000), part(14, BIOS, 4), part(15, ESP, 106), part(16, "BC13C2FF-59E6-4262-A352-B275FD6F7172", 913));
  assert.equal(chosen(t), 1);
});

void test("the largest Linux filesystem partition when none is typed root (a /boot beside the root)", () => {
  assert.equal(chosen(table("gpt", part(1, LINUX_FS, 512), part(2, LINUX_FS, 4000), part(3, ESP, 100))), 2);
  assert.equal(chosen(table("dos", part(1, "82", 2000), part(2, "83", 512), part(3, "83", 3000))), 3);
});

void test("a Linux partition without a filesystem is passed over", () => {
  assert.equal(chosen(table("dos", part(1, "83", 4000), part(2, "83", 500)), fsExcept(1)), 2);
});

void test("failing typed partitions, the largest other partition holding ext4/xfs/btrfs", () => {
  assert.equal(chosen(table("gpt", part(1, ESP, 100), part(2, MS_DATA, 3000))), 2);
});

void test("ESP, swap, LVM only: refused, listing what it found", () => {
  const c = chooseRootPartition(table("gpt", part(1, ESP, 100), part(2, "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F", 1000), part(3, LVM, 5000)), fsExcept(1, 2, 3));
  assert.ok("error" in c);
  assert.equal(
    c.error,
    "no partition holds a Linux root filesystem (partitions: 1 EFI System, 2 Linux swap, 3 Linux LVM); Kiln imports a root that is a plain ext2/3/4, xfs or btrfs partition (LVM, RAID and LUKS are not supported)",
  );
});

void test("an empty partition table is refused", () => {
  const c = chooseRootPartition(table("gpt"), fsExcept());
  assert.ok("error" in c && /no partitions/.test(c.error));
});

void test("sfdisk --json is read into byte offsets and partition numbers from node names", () => {
  const t = parseSfdiskJson(
    JSON.stringify({
      partitiontable: {
        label: "gpt",
        device: "disk1",
        unit: "sectors",
        sectorsize: 512,
        partitions: [
          { node: "disk1p1", start: 2048, size: 8192, type: "21686148-6449-6e6f-744e-656564454649" },
          { node: "disk1p14", start: 10240, size: 102400, type: ROOT_X64, name: "root", attrs: "GUID:63" },
        ],
      },
    }),
  );
  assert.equal(t.label, "gpt");
  assert.deepEqual(
    t.partitions.map((p) => [p.number, p.start, p.size, p.type]),
    [
      [1, 1048576, 4194304, BIOS],
      [14, 5242880, 52428800, ROOT_X64],
    ],
  );
  assert.equal(t.partitions[1]!.attrs, "GUID:63");
});
