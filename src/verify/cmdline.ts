/**
 * Kernel command lines for boot tests, and the marker that proves the guest reached userspace.
 *
 * The marker travels on the command line, so nothing test-only stays in the image:
 * `systemd.run=` runs one command once systemd is up, `systemd.run_success_action=poweroff`
 * ends the boot (both in bookworm's systemd, build-facts §8). The kernel echoes its whole
 * command line to the console, so a literal marker would be "found" even when the guest never
 * got past the kernel: the guest computes the marker with shell arithmetic from two random
 * numbers, and only the computed text counts.
 */
import { randomInt } from "node:crypto";

export interface BootMarker {
  /** Text only a booted guest prints, e.g. `KILN-VERIFY-1234567`. */
  readonly expected: string;
  /** Command-line words that make the guest print it. */
  readonly words: string[];
}

export function createMarker(random: () => number = () => randomInt(100_000, 1_000_000)): BootMarker {
  const a = random();
  const b = random();
  return {
    expected: `KILN-VERIFY-${a + b}`,
    words: [`systemd.run="/bin/sh -c 'echo KILN-VERIFY-$((${a}+${b})) > /dev/ttyS0'"`, "systemd.run_success_action=poweroff"],
  };
}

/** True if `text` (serial output) holds the computed marker, not a longer number starting with it. */
export function markerSeen(text: string, marker: BootMarker): boolean {
  return new RegExp(`${marker.expected}(?!\\d)`).test(text);
}

/**
 * A flavor's boot-params with the squashfs URL filled in, plus the serial console the test reads.
 * console=ttyS0 goes last: the last console= becomes /dev/console.
 */
export function verifyCmdline(bootParams: string, squashfsUrl: string): string {
  const filled = bootParams.replaceAll("${squashfs_url}", squashfsUrl).replace(/\s+/g, " ").trim();
  return `${filled} console=ttyS0`;
}

/**
 * `cmdline` plus the marker and two test-only words:
 *  - `panic=-1`: with qemu's -no-reboot, a kernel panic and an initramfs panic (initramfs-tools
 *    reboots at once when panic= is negative) end qemu at once, so a broken image fails in
 *    seconds with its panic message in the log, not in an (initramfs) shell at the timeout;
 *  - `cloud-init=disabled`: qemu offers no datasource to search for (build-facts §4); the test
 *    proves the image reaches userspace, not that a datasource answers.
 */
export function withMarker(cmdline: string, marker: BootMarker): string {
  return [cmdline, "panic=-1", "cloud-init=disabled", ...marker.words].join(" ");
}
