import assert from "node:assert/strict";
import { test } from "node:test";
import { qemuCommand } from "../../src/verify/boot.js";
import { createMarker, markerSeen, verifyCmdline, withMarker } from "../../src/verify/cmdline.js";
import { plainLines, stutterTolerant } from "../../src/verify/serial-log.js";
import { hostShare } from "../../src/verify/boot.js";
import { explainFailure } from "../../src/verify/serial-log.js";

const fixed = () => {
  const numbers = [123456, 654321];
  return createMarker(() => numbers.shift()!);
};

test("the marker is computed by the guest; the command line carries only the sum's terms", () => {
  const m = fixed();
  assert.equal(m.expected, "KILN-VERIFY-777777");
  assert.deepEqual(m.words, [
    `systemd.run="/bin/sh -c 'echo KILN-VERIFY-$((123456+654321)) > /dev/ttyS0'"`,
    "systemd.run_success_action=poweroff",
  ]);
  assert.ok(!m.words.join(" ").includes(m.expected));
});

test("a log holding only the echoed command line does not pass", () => {
  const m = fixed();
  const cmdline = withMarker(verifyCmdline("root=squash:${squashfs_url} ip=dhcp", "http://10.0.2.2:8080/squashfs"), m);
  const log = [
    `[    0.000000] Command line: ${cmdline}`,
    `[    0.000000] Kernel command line: ${cmdline}`,
    "[    9.580526] Run /init as init process",
    "kiln: could not download the root filesystem from http://10.0.2.2:8080/squashfs (5 attempts)",
  ].join("\n");
  assert.equal(markerSeen(log, m), false);
});

test("the computed marker passes, with or without systemd's colour codes around it", () => {
  const m = fixed();
  assert.ok(markerSeen("Starting kernel-command-line.service...\r\nKILN-VERIFY-777777\r\n", m));
  assert.ok(markerSeen("\x1b[0;32m  OK  \x1b[0mKILN-VERIFY-777777", m));
});

test("a serial log that stuttered (a character written twice on a loaded host) still shows the marker; another number does not", () => {
  assert.ok(markerSeen("KIILN-VERIFY-7777777\r\n", fixed()));
  assert.equal(markerSeen("KILN-VERIFY-7777\r\n", fixed()), false, "fewer digits");
  assert.equal(markerSeen("KILN-VERIFY-777787\r\n", fixed()), false, "another digit");
});

test("GRUB's editor help text as a loaded host logged it matches the stutter-tolerant pattern", () => {
  // Bytes from a real serial log (GRUB 2.06 on SeaBIOS under TCG at load 13).
  const logged = "\x1b[m\x1b[18;2H\x1b[19;2H\x1b[m     Minimum Emacs-like screen editting is supported. TAB lists        ";
  const text = plainLines(logged).join("\n");
  assert.equal(/Emacs-like screen editing/.test(text), false, "the exact text is not there");
  assert.ok(new RegExp(stutterTolerant("Emacs-like screen editing")).test(text));
  assert.equal(new RegExp(stutterTolerant("Emacs-like screen editing")).test("Emacs-like screen edting"), false, "a missing letter is not a stutter");
  assert.equal(stutterTolerant("a.b"), "a+\\.+b+", "regex characters are literal");
});

test("a longer number that starts with the sum does not pass", () => {
  assert.equal(markerSeen("KILN-VERIFY-7777770\n", fixed()), false);
});

test("random markers differ", () => {
  assert.notEqual(createMarker().expected, createMarker().expected);
});

test("boot-params: every ${squashfs_url} filled in, one line, serial console last", () => {
  const params = "root=squash:${squashfs_url} ip=dhcp console=tty0\n  kiln.mirror=${squashfs_url}\n";
  assert.equal(
    verifyCmdline(params, "http://10.0.2.2:41234/squashfs"),
    "root=squash:http://10.0.2.2:41234/squashfs ip=dhcp console=tty0 kiln.mirror=http://10.0.2.2:41234/squashfs console=ttyS0",
  );
});

test("the test command line adds fail-fast panic=-1 and the marker after the flavor's words", () => {
  const m = fixed();
  const line = withMarker("root=squash:http://x/squashfs ip=dhcp console=ttyS0", m);
  assert.ok(line.startsWith("root=squash:http://x/squashfs ip=dhcp console=ttyS0 panic=-1 cloud-init=disabled systemd.run="));
  assert.ok(line.endsWith("systemd.run_success_action=poweroff"));
});

test("qemu runs diskless, without reboot or monitor, serial to the log, NIC on user networking", () => {
  const argv = qemuCommand({ kernel: "/o/k", initrd: "/o/i", cmdline: "root=x", serialLog: "/o/logs/s.log" }, "tcg", fixed());
  const joined = argv.join(" ");
  assert.equal(argv[0], "qemu-system-x86_64");
  for (const want of ["-no-reboot", "-nographic", "-monitor none", "-serial file:/o/logs/s.log", "-nic user,model=virtio-net-pci", "-kernel /o/k", "-initrd /o/i", "-accel tcg,thread=multi", "-m 2048"]) {
    assert.ok(joined.includes(want), `missing ${want}`);
  }
  assert.ok(!argv.includes("-drive") && !argv.includes("-hda"));
  assert.equal(argv.at(-2), "-append");
  assert.ok(argv.at(-1)!.includes("KILN-VERIFY-$((123456+654321))"));
});

test("a failure names its cause: the hook's panic over the progress lines", () => {
  const tail = [
    "Begin: kiln: downloading http://10.0.2.2:1/squashfs (attempt 5 of 5) ... wget: can't connect to remote host (10.0.2.2): Connection refused",
    "kiln: could not download the root filesystem from http://10.0.2.2:1/squashfs (5 attempts)",
    "Rebooting automatically due to panic= boot argument",
    "[   40.1] reboot: Restarting system",
  ].join("\r\n");
  assert.equal(explainFailure(tail), "kiln: could not download the root filesystem from http://10.0.2.2:1/squashfs (5 attempts)");
});

test("a failure names its cause: a kernel panic", () => {
  const tail = "[    2.1] VFS: Unable to mount root fs\n[    2.1] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)\n[    2.2] ---[ end Kernel panic ]---\n";
  assert.equal(explainFailure(tail), "Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)");
});

test("without a known cause, the last serial lines (no colour codes)", () => {
  assert.equal(explainFailure("a\n\x1b[0;32m  OK  \x1b[0m Reached target b\nc\n\n"), "last serial lines: a · OK   Reached target b · c");
  assert.equal(explainFailure(""), "the serial log is empty");
});

test("boot timeouts stretch on a host busier than its CPUs, at most 3x, and not on an idle one", () => {
  assert.equal(hostShare(0.5, 2), 1, "idle: a second is a second");
  assert.equal(hostShare(2, 2), 1, "fully used, not over: no stretch");
  assert.equal(hostShare(4, 2), 0.5, "twice the CPUs' worth of load: half a boot second per second");
  assert.equal(hostShare(13, 2), 1 / 3, "capped: a stuck guest still times out within 3x");
});
