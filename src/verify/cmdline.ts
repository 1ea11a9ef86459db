/**
 * Kernel command lines for boot tests, and the marker that proves the guest reached userspace.
 *
 * The marker travels on the command line, so nothing test-only stays in the image:
 * `systemd.run=` runs one command once systemd is up, `systemd.run_success_action=poweroff`
 * ends the boot (both in bookworm's systemd, docs/architecture.md#boot-verification). The kernel echoes its whole
 * command line to the console, so a literal marker would be "found" even when the guest never
 * got past the kernel: the guest computes the marker with shell arithmetic from two random
 * numbers, and only the computed text counts.
 */
import { randomInt } from "node:crypto";
import { stutterTolerant } from "./serial-log.js";

export interface BootMarker {
  /** Text only a booted guest prints, e.g. `KILN-VERIFY-1234567`. */
  readonly expected: string;
  /** Command-line words that make the guest print it. */
  readonly words: string[];
  /** The two numbers the guest adds. */
  readonly terms: readonly [number, number];
}

export function createMarker(random: () => number = () => randomInt(100_000, 1_000_000)): BootMarker {
  const a = random();
  const b = random();
  return {
    expected: `KILN-VERIFY-${a + b}`,
    words: [`systemd.run="/bin/sh -c 'echo KILN-VERIFY-$((${a}+${b})) > /dev/ttyS0'"`, "systemd.run_success_action=poweroff"],
    terms: [a, b],
  };
}

/** True if `text` (serial output) holds the computed marker, not a longer number starting with it. */
export function markerSeen(text: string, marker: BootMarker): boolean {
  // Stutter-tolerant: a loaded host's serial log can hold a character twice (serial-log.ts).
  return new RegExp(`${stutterTolerant(marker.expected)}(?!\\d)`).test(text);
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
 *  - `cloud-init=disabled`: qemu offers no datasource to search for; the test
 *    proves the image reaches userspace, not that a datasource answers.
 */
export function withMarker(cmdline: string, marker: BootMarker): string {
  return [cmdline, "panic=-1", "cloud-init=disabled", ...marker.words].join(" ");
}

/**
 * The test words for a boot through GRUB (disk, ISO), as GRUB script text to type at the end of
 * the menu entry's `linux` line. GRUB backslash-escapes any quote it passes to the kernel, so
 * nothing here may reach the kernel quoted: the words are single-quoted for GRUB only, the shell
 * command has no spaces (${IFS} splits it) and every "$" is doubled for systemd's ExecStart=,
 * which systemd.run= becomes. `hostname` first waits for cloud-init's main stage (which applies
 * the seed's hostname; `systemctl start` joins the boot's own start job) and then adds the
 * guest's hostname after the marker (…-host-<name>); `cloudInit` leaves cloud-init on.
 */
export function grubMarkerText(marker: BootMarker, o: { cloudInit?: boolean; hostname?: boolean } = {}): string {
  const [a, b] = marker.terms;
  const wait = o.hostname ? "systemctl$${IFS}start$${IFS}cloud-init.service;" : "";
  const host = o.hostname ? "-host-$$(hostname)" : "";
  const run = `systemd.run=/bin/sh -c ${wait}echo$\${IFS}KILN-VERIFY-$$((${a}+${b}))${host}>/dev/ttyS0`;
  return ["console=ttyS0", "panic=-1", ...(o.cloudInit ? [] : ["cloud-init=disabled"]), `'${run}'`, "systemd.run_success_action=poweroff"].join(" ");
}

/** The hostname a guest printed after the marker (grubMarkerText with hostname), if it did. */
export function hostnameAfterMarker(text: string, marker: BootMarker): string | undefined {
  return new RegExp(`${marker.expected}-host-([A-Za-z0-9.-]+)`).exec(text)?.[1];
}
