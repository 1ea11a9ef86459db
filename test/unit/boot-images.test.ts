/**
 * The pure parts of disks and ISOs: GRUB menus and quoting, the boot sector and core image GRUB
 * needs on a GPT disk, the partition layout, the marker typed at GRUB, seed folders and the boot
 * targets `kiln verify` derives from result.json.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import type { BuildResult } from "../../src/artifacts/result.js";
import { formatResult } from "../../src/cli/commands/verify.js";
import { diskGrubCfg, GRUB_EDITOR_LINES_TO_LINUX, grubWord, liveGrubCfg, patchBootSector, patchCoreBlocklist } from "../../src/stages/boot/grub.js";
import { fatUuid } from "../../src/stages/boot/efi.js";
import { MIB, planDiskLayout, rootSizeFor, sfdiskScript } from "../../src/stages/disk/layout.js";
import { isoLabel } from "../../src/stages/live/iso-image.js";
import { readSeed, seedName } from "../../src/stages/live/seed.js";
import { createMarker, grubMarkerText, hostnameAfterMarker, markerSeen } from "../../src/verify/cmdline.js";
import { verifyTargets } from "../../src/verify/verify-out.js";

test("GRUB words: plain ones as they are, anything GRUB would read otherwise in single quotes", () => {
  assert.equal(grubWord("console=ttyS0,115200"), "console=ttyS0,115200");
  assert.equal(grubWord("ds=nocloud;s=file:///x/"), "'ds=nocloud;s=file:///x/'");
  assert.equal(grubWord("kiln.x=$y"), "'kiln.x=$y'");
  assert.throws(() => grubWord("a b"));
});

test("the disk menu: search by UUID, and `linux` first in the entry (kiln verify types there)", () => {
  const cfg = diskGrubCfg({ title: "img (generic, 6.1.0-56-amd64)", rootUuid: "u-1", kernelVersion: "6.1.0-56-amd64", cmdline: ["quiet", "x=$y"] });
  assert.match(cfg, /^search --no-floppy --fs-uuid --set=root u-1$/m);
  const entry = cfg.slice(cfg.indexOf("menuentry"));
  const lines = entry.split("\n");
  // GRUB's editor shows "setparams …", the rest of the menuentry line, then the body.
  assert.equal(GRUB_EDITOR_LINES_TO_LINUX, 2);
  assert.equal(lines[1], "\tlinux /boot/vmlinuz-6.1.0-56-amd64 root=UUID=u-1 ro quiet 'x=$y'");
  assert.equal(lines[2], "\tinitrd /boot/initrd.img-6.1.0-56-amd64");
});

test("the live menu hands the medium's UUID, probed at boot, to the initramfs", () => {
  const cfg = liveGrubCfg({ title: "img live", idFile: "/.disk/kiln-abc", cmdline: ["console=ttyS0"] });
  assert.match(cfg, /search --no-floppy --set=root --file \/\.disk\/kiln-abc/);
  assert.match(cfg, /probe --fs-uuid --set=kiln_medium \$root/);
  assert.equal(cfg.slice(cfg.indexOf("menuentry")).split("\n")[1], "\tlinux /live/vmlinuz root=live:UUID=$kiln_medium console=ttyS0");
});

test("boot.img goes into the MBR's code area only, pointing at core.img", () => {
  const mbr = Buffer.alloc(512, 0xaa); // stands for the disk signature and partition table
  const bootImg = Buffer.alloc(512, 0x11);
  const out = patchBootSector(mbr, bootImg, 2048);
  assert.equal(out.readBigUInt64LE(0x5c), 2048n);
  assert.equal(out[0x64], 0xff);
  assert.deepEqual([out[0x66], out[0x67]], [0x90, 0x90]);
  assert.equal(out[0], 0x11);
  assert.ok(out.subarray(440).every((b) => b === 0xaa), "partition table kept");
  const core = patchCoreBlocklist(Buffer.alloc(1000, 1), 2048);
  assert.equal(core.length, 1024);
  assert.equal(core.readBigUInt64LE(500), 2049n);
  assert.equal(core.readUInt16LE(508), 1);
  assert.equal(core.readUInt16LE(510), 0x820);
});

test("the disk layout: MiB-aligned BIOS boot, ESP, root, extras; a too-small disk.size is refused", () => {
  assert.equal(rootSizeFor(1000 * MIB), 1506 * MIB);
  const l = planDiskLayout({ rootNeeds: 1024 * MIB, extras: [{ name: "data", size: 64 * MIB, mountpoint: "/srv/data" }] });
  assert.deepEqual(l.partitions.map((p) => [p.name, p.start / MIB, p.size / MIB]), [["bios", 1, 1], ["esp", 2, 128], ["root", 130, 1024], ["data", 1154, 64]]);
  assert.equal(l.size, 1219 * MIB);
  assert.match(sfdiskScript(l), /^label: gpt\nfirst-lba: 2048\nstart=2048, size=2048, type=21686148-6449-6E6F-744E-656564454649, name="bios"\n/);
  const sized = planDiskLayout({ rootNeeds: 1024 * MIB, diskSize: 4096 * MIB, extras: [] });
  assert.equal(sized.partitions[2]!.size, (4096 - 131) * MIB, "root takes the rest");
  assert.throws(() => planDiskLayout({ rootNeeds: 4096 * MIB, diskSize: 2048 * MIB, extras: [] }), /disk\.size: 2048 MiB is too small/);
  assert.equal(fatUuid("1a2b3c4d"), "1A2B-3C4D");
  assert.equal(isoLabel("bookworm-server"), "KILN_BOOKWORM_SERVER");
});

test("the marker typed at GRUB reaches the kernel unquoted and still only the guest can compute it", () => {
  const m = createMarker(((n) => () => n.shift()!)([123456, 654321]));
  const text = grubMarkerText(m);
  assert.equal(text, "console=ttyS0 panic=-1 cloud-init=disabled 'systemd.run=/bin/sh -c echo$${IFS}KILN-VERIFY-$$((123456+654321))>/dev/ttyS0' systemd.run_success_action=poweroff");
  // GRUB keeps what is inside '…' literally and drops the quotes: no quote or backslash may be inside.
  const inside = /'([^']*)'/.exec(text)![1]!;
  assert.doesNotMatch(inside, /["'\\]/);
  assert.equal(markerSeen(text, m), false);
  const seeded = grubMarkerText(m, { cloudInit: true, hostname: true });
  assert.doesNotMatch(seeded, /cloud-init=disabled/);
  assert.match(seeded, /systemctl\$\$\{IFS\}start\$\$\{IFS\}cloud-init\.service;echo/);
  assert.equal(hostnameAfterMarker("x\nKILN-VERIFY-777777-host-site-a\r\n", m), "site-a");
});

test("seed folders: NoCloud, config drive, and what is wrong with a bad one", async () => {
  const dir = await mkdtemp(path.join(tmpdir(), "kiln-seed-"));
  try {
    const nocloud = path.join(dir, "Site A");
    await mkdir(nocloud);
    await writeFile(path.join(nocloud, "meta-data"), "instance-id: a-1\nlocal-hostname: site-a\n");
    await writeFile(path.join(nocloud, "user-data"), "#cloud-config\nhostname: ignored\n");
    await writeFile(path.join(nocloud, "network-config"), "version: 2\nethernets: {}\n");
    const s = await readSeed(nocloud);
    assert.deepEqual(s, {
      datasource: "nocloud",
      label: "CIDATA",
      hostname: "site-a",
      files: { "/meta-data": path.join(nocloud, "meta-data"), "/user-data": path.join(nocloud, "user-data"), "/network-config": path.join(nocloud, "network-config") },
    });
    assert.equal(seedName(undefined, nocloud), "site-a");

    const drive = path.join(dir, "drive");
    await mkdir(path.join(drive, "openstack/latest"), { recursive: true });
    await writeFile(path.join(drive, "openstack/latest/meta_data.json"), JSON.stringify({ uuid: "u", hostname: "rack12" }));
    assert.deepEqual(await readSeed(drive), { datasource: "configdrive", label: "config-2", hostname: "rack12", files: { "/openstack": path.join(drive, "openstack") } });

    const empty = path.join(dir, "empty");
    await mkdir(empty);
    await writeFile(path.join(empty, "meta-data"), "instance-id: x\n");
    await assert.rejects(readSeed(empty), (e: Error & { code?: string }) => e.code === "INPUT_INVALID" && /has no user-data/.test(e.message));
    await writeFile(path.join(empty, "user-data"), "#cloud-config\n");
    await writeFile(path.join(empty, "network-config"), "ethernets: {}\n");
    await assert.rejects(readSeed(empty), /network-config: expected cloud-init network config version 1 or 2/);
    await assert.rejects(readSeed(path.join(dir, "nope")), /--seed .*nope: not a folder/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("kiln verify's targets come from result.json: pxe, disk on both firmwares, ISO as CD and stick, seeded ISOs", () => {
  const a = (name: string, ftype: string, p: string, flavor?: string) => ({ name, ftype, path: p, type: "t", sha256: "", md5: "", size: 0, ...(flavor ? { flavor } : {}) });
  const result = {
    recipe: { name: "r", sha256: "x" },
    stages: [],
    verify: [],
    kiln: { version: "0", created: "", seconds: 0, unchangedImport: false },
    artifacts: [a("squashfs", "squashfs", "squashfs"), a("boot-kernel", "boot-kernel", "generic/boot-kernel", "generic"), a("disk.qcow2", "disk1.img", "generic/disk.qcow2", "generic"), a("live.iso", "iso", "generic/live.iso", "generic")],
    seeded: [{ ...a("live-seeded.iso", "iso-seeded", "generic/live-site-a.iso", "generic"), seed: { name: "site-a", dir: "/s", datasource: "nocloud" as const, hostname: "site-a", seconds: 1 } }],
  } satisfies BuildResult;
  const all = verifyTargets(result, ["generic"]);
  assert.deepEqual(all.map((t) => `${t.target} ${t.firmware ?? ""} ${t.medium?.kind ?? ""}`.trim()), [
    "pxe",
    "qcow2-bios bios disk",
    "qcow2-uefi uefi disk",
    "iso-bios bios cdrom",
    "iso-uefi uefi usb",
    "iso-seeded:site-a uefi cdrom",
  ]);
  assert.equal(all.at(-1)!.hostname, "site-a");
  assert.deepEqual(verifyTargets(result, ["generic"], ["iso-seeded", "qcow2-uefi"]).map((t) => t.target), ["qcow2-uefi", "iso-seeded:site-a"]);
  assert.throws(() => verifyTargets(result, ["generic"], ["vmdk"]), /--target vmdk: not in this build; it has pxe, qcow2-bios/);
});

test("result lines name the target and what a UEFI or seeded boot proved", () => {
  assert.equal(
    formatResult({ flavor: "generic", target: "qcow2-uefi", firmware: "uefi", ok: true, seconds: 91, log: "logs/x.log", secureBoot: true }),
    "✓ generic qcow2-uefi  booted in 91.0 s (Secure Boot on)  (logs/x.log)\n",
  );
  assert.equal(formatResult({ flavor: "generic", target: "pxe", ok: true, seconds: 48, log: "l" }), "✓ generic  booted in 48.0 s  (l)\n");
});
