// qcow2 and live ISO, for real (root): build test/fixtures/recipes/disk-iso (a host profile, an
// Ansible playbook, a DKMS module; squashfs, qcow2 and ISO), read every setting back from the
// squashfs, the initrd and the disk, make a seeded ISO with `kiln iso --seed`, and boot the disk
// and the ISO on SeaBIOS and OVMF (Secure Boot) plus the seeded ISO under qemu. Boots run one at
// a time, 1.5-3 minutes each under TCG; the whole file takes 12-20 minutes on 2 cores.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileDigests } from "../../src/cache/key.js";
import type { BuildResult, ImsManifest, VerifyEntry } from "../../src/artifacts/result.js";
import { verifyOut } from "../../src/verify/verify-out.js";
import { loopsUnder, mountsUnder, processesUnder } from "../helpers/host.js";
import { REPO, runKiln, scratch } from "../helpers/kiln.js";

const FIXTURE = path.join(REPO, "test/fixtures/recipes/disk-iso");
const RECIPE = path.join(FIXTURE, "recipe.yaml");

/** A tool's stdout; its chatter on stderr is kept out of the test report (and in the error if it fails). */
function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: "utf8", maxBuffer: 256 << 20, stdio: ["ignore", "pipe", "pipe"] });
}

describe("qcow2 and ISO: host profile, Ansible, DKMS, BIOS and UEFI boots, seeded ISO", () => {
  let s: Awaited<ReturnType<typeof scratch>>;
  let result: BuildResult;
  const out = () => s.out("out");
  const cat = (file: string) => sh("unsquashfs", ["-cat", path.join(out(), "squashfs"), file]);

  before(async () => {
    s = await scratch("kiln-disk-", { sharedLayers: true });
  });
  after(async () => {
    assert.deepEqual(await mountsUnder(s.dir), [], "no mounts left");
    assert.deepEqual(loopsUnder(s.dir), [], "no loop devices left");
    assert.deepEqual(processesUnder(s.dir), [], "no processes left (qemu, xorriso)");
    await rm(s.dir, { recursive: true, force: true });
  });

  test("bad profile values are refused before anything is built, all at once, with exit 2", async () => {
    const bad = s.out("bad.yaml");
    await writeFile(bad, `apiVersion: kiln/v1
name: bad-profile
base: { debian: bookworm }
config:
  sysctl: { "vm.swappiness=10": 1 }
  modules: [kernel/drivers/net/dummy.ko]
  users: [{ name: ops, password: hunter2 }]
kernels: [{ flavor: generic, package: linux-image-amd64 }]
`);
    const r = await runKiln(["build", bad, "--out", s.out("out-bad"), "--cache-dir", s.cache]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /config\.sysctl\["vm\.swappiness=10"\]: .* is not a sysctl name/);
    assert.match(r.stderr, /config\.modules\[0\]: "kernel\/drivers\/net\/dummy\.ko" is not a kernel module name/);
    assert.match(r.stderr, /config\.users\[0\]\.password: passwords are never written into an image/);
    assert.doesNotMatch(r.stderr, /\n\s+at /, "no stack trace");
  });

  test("builds the recipe: config and ansible layers, qcow2 and ISO artifacts in result.json and the IMS manifest", async () => {
    const r = await runKiln(["build", RECIPE, "--out", out(), "--cache-dir", s.cache, "--no-verify", "--json"]);
    assert.equal(r.code, 0, r.stderr + r.stdout.slice(-3000));
    result = JSON.parse(await readFile(path.join(out(), "result.json"), "utf8")) as BuildResult;
    assert.deepEqual(result.stages.map((x) => x.name), ["bootstrap", "packages", "config", "ansible", "seal", "kernel:generic", "squashfs", "manifest", "qcow2", "iso"]);
    const disk = result.artifacts.find((a) => a.name === "disk.qcow2")!;
    assert.deepEqual([disk.path, disk.type, disk.ftype, disk.flavor, disk.kpackage], ["generic/disk.qcow2", "application/x-qemu-disk", "disk1.img", "generic", "linux-image-amd64"]);
    const iso = result.artifacts.find((a) => a.name === "live.iso")!;
    assert.deepEqual([iso.path, iso.type, iso.ftype, iso.flavor], ["generic/live.iso", "application/x-iso9660-image", "iso", "generic"]);
    for (const a of result.artifacts) assert.equal((await fileDigests(path.join(out(), a.path))).sha256, a.sha256, a.path);
    const ims = JSON.parse(await readFile(path.join(out(), "manifest.json"), "utf8")) as ImsManifest;
    assert.ok(ims.artifacts.some((a) => a.type === "application/x-qemu-disk" && a.link.path === "generic/disk.qcow2" && a.md5 === disk.md5));
    assert.ok(ims.artifacts.some((a) => a.type === "application/x-iso9660-image" && a.link.path === "generic/live.iso"));
    assert.match(sh("qemu-img", ["info", path.join(out(), disk.path)]), /file format: qcow2[\s\S]*compression type: zstd/);
    const play = await readFile(path.join(out(), "logs/ansible.log"), "utf8");
    assert.match(play, /TASK \[marker : A file the test reads back/);
    assert.match(play, /ok=\d+ +changed=2 +unreachable=0 +failed=0/);
  });

  test("every profile setting is in the root where the OS reads it", () => {
    assert.equal(cat("etc/sysctl.d/90-kiln.conf").split("\n").filter((l) => !l.startsWith("#")).join("\n"), "vm.swappiness = 13\nnet.ipv4.ip_forward = 1\nnet.ipv4.ip_local_port_range = 32768 60999\n");
    assert.match(cat("etc/security/limits.d/90-kiln.conf"), /^@ops\tsoft\tnofile\t65536\n\*\t-\tmemlock\tunlimited\n/m);
    assert.match(cat("etc/modules-load.d/kiln.conf"), /^br_netfilter\ndummy\n/m);
    assert.match(cat("etc/modprobe.d/kiln-blacklist.conf"), /^blacklist floppy\ninstall floppy \/bin\/false\nblacklist pcspkr\ninstall pcspkr \/bin\/false\n/m);
    assert.match(cat("etc/passwd"), /^ops:x:2000:2000::\/home\/ops:\/bin\/bash$/m);
    assert.match(cat("etc/group"), /^ops:x:2000:(ops)?$/m);
    assert.match(cat("etc/group"), /^sudo:x:27:ops$/m);
    assert.match(cat("etc/shadow"), /^ops:!:/m, "no password: locked, keys only");
    assert.equal(cat("home/ops/.ssh/authorized_keys"), "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGt1bG4tdGVzdC1rZXktbm90LWEtcmVhbC1vbmUtMDE ops@kiln-test\n");
    assert.match(cat("etc/sudoers.d/90-kiln-ops"), /^ops ALL=\(ALL:ALL\) NOPASSWD: ALL$/m);
    const list = sh("unsquashfs", ["-lls", path.join(out(), "squashfs")]);
    assert.match(list, /^-rw------- 2000\/2000 .* squashfs-root\/home\/ops\/\.ssh\/authorized_keys$/m);
    assert.match(list, /^drwx------ 2000\/2000 .* squashfs-root\/home\/ops\/\.ssh$/m);
    assert.match(list, /^-r--r----- root\/root .* squashfs-root\/etc\/sudoers\.d\/90-kiln-ops$/m);
    assert.match(list, /^drwxr-x--- 2000\/2000 .* squashfs-root\/var\/lib\/kiln-test$/m, "permissions: a new directory");
    assert.match(list, /^-rw------- root\/root .* squashfs-root\/etc\/ssh\/sshd_config$/m, "permissions: an existing file");
    assert.match(list, /squashfs-root\/etc\/systemd\/system\/multi-user\.target\.wants\/ssh\.service -> /, "ssh enabled");
    assert.doesNotMatch(list, /timers\.target\.wants\/apt-daily\.timer /, "apt-daily.timer disabled");
    assert.match(list, /squashfs-root\/etc\/systemd\/system\/apt-daily-upgrade\.timer -> \/dev\/null/, "apt-daily-upgrade.timer masked");
    assert.match(cat("etc/kiln-ansible"), /^set by ansible-playbook on Debian 12$/m, "the playbook ran with the recipe's vars and the image's facts");
    assert.match(cat("etc/motd"), /^configured by ansible$/m);
    assert.doesNotMatch(list, /squashfs-root\/root\/\.ansible|squashfs-root\/tmp\/\.ansible/, "Ansible's scratch files stay out of the image");
    assert.match(sh("cat", [path.join(out(), "squashfs.manifest")]), /^apparmor\t/m, "apparmor: true installs AppArmor");
    const params = sh("cat", [path.join(out(), "generic/boot-params")]);
    assert.equal(params.trim(), "root=squash:${squashfs_url} ip=dhcp console=ttyS0 kiln.profile=test hugepagesz=2M hugepages=64 apparmor=1 security=apparmor");
  });

  test("the DKMS module is built against the flavor's kernel, on the disk and in the initrd", () => {
    const kernelVersion = result.artifacts.find((a) => a.name === "boot-kernel")!.kernelVersion!;
    const initrd = execFileSync("sh", ["-c", `zstd -dc '${path.join(out(), "generic/boot-initrd")}' | cpio -t 2>/dev/null`], { encoding: "utf8", maxBuffer: 64 << 20 });
    assert.match(initrd, new RegExp(`lib/modules/${kernelVersion}/updates/dkms/acpi_call\\.ko`));
    assert.match(initrd, /etc\/modprobe\.d\/kiln-blacklist\.conf/, "the blacklist holds in the initramfs too");
    const raw = s.out("disk.raw");
    try {
      sh("qemu-img", ["convert", "-O", "raw", path.join(out(), "generic/disk.qcow2"), raw]);
      const table = JSON.parse(sh("sfdisk", ["--json", raw])) as { partitiontable: { label: string; partitions: Array<{ start: number; type: string; name: string }> } };
      assert.equal(table.partitiontable.label, "gpt");
      const parts = Object.fromEntries(table.partitiontable.partitions.map((p) => [p.name, p]));
      assert.deepEqual(Object.keys(parts), ["bios", "esp", "root", "data"]);
      assert.equal(parts.bios!.type, "21686148-6449-6E6F-744E-656564454649");
      assert.equal(parts.esp!.type, "C12A7328-F81F-11D2-BA4B-00A0C93EC93B");
      const root = `${raw}?offset=${parts.root!.start * 512}`;
      const debugfs = (cmd: string) => sh("debugfs", ["-R", cmd, root]);
      assert.match(debugfs(`ls -l /usr/lib/modules/${kernelVersion}/updates/dkms`), /acpi_call\.ko/);
      assert.match(debugfs("ls -l /boot"), new RegExp(`vmlinuz-${kernelVersion}[\\s\\S]*initrd\\.img-${kernelVersion}|initrd\\.img-${kernelVersion}[\\s\\S]*vmlinuz-${kernelVersion}`), "the GA flavor's kernel is installed");
      const rootUuid = sh("blkid", ["-p", "-O", String(parts.root!.start * 512), "-s", "UUID", "-o", "value", raw]).trim();
      const espUuid = sh("blkid", ["-p", "-O", String(parts.esp!.start * 512), "-s", "UUID", "-o", "value", raw]).trim();
      const fstab = debugfs("cat /etc/fstab");
      assert.match(fstab, new RegExp(`^UUID=${rootUuid}\\t/\\text4\\t`, "m"));
      assert.match(fstab, new RegExp(`^UUID=${espUuid}\\t/boot/efi\\tvfat\\t`, "m"));
      assert.match(fstab, /^UUID=\S+\t\/srv\/data\text4\tdefaults,nofail\t0\t2$/m);
      const grub = debugfs("cat /boot/grub/grub.cfg");
      assert.match(grub, new RegExp(`linux /boot/vmlinuz-${kernelVersion} root=UUID=${rootUuid} ro console=ttyS0 kiln.profile=test hugepagesz=2M hugepages=64 apparmor=1 security=apparmor\\n`));
      const esp = execFileSync("mdir", ["-b", "-/", "-i", `${raw}@@${parts.esp!.start * 512}`, "::/EFI"], { encoding: "utf8", env: { ...process.env, MTOOLS_SKIP_CHECK: "1" } });
      for (const f of ["BOOT/BOOTX64.EFI", "BOOT/grubx64.efi", "debian/grub.cfg"]) assert.match(esp, new RegExp(`::/EFI/${f.replace(".", "\\.")}`, "i"), f);
      assert.ok(!/fbx64/i.test(esp), "no fallback loader: it would rewrite NVRAM and reboot");
      const mbr = Buffer.alloc(512);
      execFileSync("dd", [`if=${raw}`, "bs=512", "count=1", "status=none"], { maxBuffer: 1024 }).copy(mbr);
      assert.equal(mbr.readBigUInt64LE(0x5c), BigInt(parts.bios!.start), "boot.img points at core.img in the BIOS boot partition");
    } finally {
      execFileSync("rm", ["-f", raw]);
    }
  });

  test("kiln iso --seed makes a site's ISO in seconds with the build's squashfs, kernel and initrd unchanged", async () => {
    const bad = await runKiln(["iso", out(), "--seed", path.join(FIXTURE, "roles"), "--cache-dir", s.cache]);
    assert.equal(bad.code, 2, bad.stderr);
    assert.match(bad.stderr, /--seed .*roles: has no meta-data and user-data/);

    const t0 = Date.now();
    const r = await runKiln(["iso", out(), "--seed", path.join(FIXTURE, "site-a"), "--cache-dir", s.cache, "--json"]);
    const seconds = (Date.now() - t0) / 1000;
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.ok(seconds < 30, `kiln iso --seed took ${seconds} s`);
    const seeded = JSON.parse(await readFile(path.join(out(), "result.json"), "utf8")) as BuildResult;
    const entry = seeded.seeded![0]!;
    assert.equal(entry.path, "generic/live-site-a.iso");
    assert.deepEqual([entry.seed.datasource, entry.seed.hostname], ["nocloud", "kiln-site-a"]);
    assert.deepEqual(seeded.artifacts, result.artifacts, "the build's artifacts (what streams publish) are unchanged");
    const iso = path.join(out(), entry.path);
    assert.match(sh("blkid", ["-s", "LABEL", "-o", "value", iso]), /^CIDATA$/m);
    for (const [inIso, built] of [["/live/filesystem.squashfs", "squashfs"], ["/live/vmlinuz", "generic/boot-kernel"], ["/live/initrd.img", "generic/boot-initrd"]]) {
      const copy = s.out("extracted");
      sh("xorriso", ["-osirrox", "on", "-indev", iso, "-extract", inIso!, copy]);
      assert.equal((await fileDigests(copy)).sha256, (await fileDigests(path.join(out(), built!))).sha256, inIso);
      await rm(copy);
    }
    sh("xorriso", ["-osirrox", "on", "-indev", iso, "-extract", "/meta-data", s.out("meta-data")]);
    assert.match(await readFile(s.out("meta-data"), "utf8"), /local-hostname: kiln-site-a/);
  });

  const boots: Record<string, VerifyEntry> = {};
  test("kiln verify boots the qcow2 on SeaBIOS and OVMF, and the ISO as a CD (BIOS) and a USB stick (UEFI)", async () => {
    // verifyOut is what `kiln verify` runs; the targets leave out the diskless boot build.test.ts covers.
    const results = await verifyOut(out(), { targets: ["qcow2-bios", "qcow2-uefi", "iso-bios", "iso-uefi"], timeoutSeconds: 420 });
    for (const v of results) boots[v.target!] = v;
    for (const v of results) assert.equal(v.ok, true, `${v.target}: ${v.reason} (${v.log})`);
    assert.equal(boots["qcow2-uefi"]!.secureBoot, true, "OVMF with Microsoft's keys: shim, signed GRUB and the kernel verified");
    const written = JSON.parse(await readFile(path.join(out(), "result.json"), "utf8")) as BuildResult;
    assert.deepEqual(written.verify.map((v) => v.target).sort(), ["iso-bios", "iso-uefi", "qcow2-bios", "qcow2-uefi"]);
    const disk = await readFile(path.join(out(), boots["qcow2-bios"]!.log), "utf8");
    assert.match(disk, /Mounted boot-efi\.mount|\/boot\/efi/, "the ESP is mounted by UUID from fstab");
    assert.match(disk, /root=UUID=/);
    const live = await readFile(path.join(out(), boots["iso-uefi"]!.log), "utf8");
    assert.match(live, /kiln: looking for the live medium UUID=/);
    assert.match(live, /usb-storage/, "booted from the USB stick");
    assert.equal((await fileDigests(path.join(out(), "generic/disk.qcow2"))).sha256, result.artifacts.find((a) => a.name === "disk.qcow2")!.sha256, "the boots left the artifact unchanged");
  });

  test("kiln iso --verify boots the seeded ISO and sees the hostname cloud-init took from meta-data", async () => {
    const r = await runKiln(["iso", out(), "--seed", path.join(FIXTURE, "site-a"), "--verify", "--timeout", "420", "--cache-dir", s.cache]);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.match(r.stdout, /✓ booted in [\d.]+ s with hostname kiln-site-a/);
    const written = JSON.parse(await readFile(path.join(out(), "result.json"), "utf8")) as BuildResult;
    const v = written.verify.find((x) => x.target === "iso-seeded:site-a")!;
    assert.deepEqual([v.ok, v.hostname, v.firmware], [true, "kiln-site-a", "uefi"]);
    assert.equal(written.verify.length, 5, "the earlier boots' entries stay");
  });
});
