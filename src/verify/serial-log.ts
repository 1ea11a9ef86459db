/**
 * Reading a guest's serial log while qemu writes it, and saying in one line why a boot failed.
 */
import { open, type FileHandle } from "node:fs/promises";

/** Reads what was appended to a file since the last call. The file may not exist yet. */
export class LogFollower {
  private offset = 0;

  constructor(private readonly file: string) {}

  async readNew(): Promise<string> {
    let fh: FileHandle;
    try {
      fh = await open(this.file, "r");
    } catch {
      return ""; // qemu has not created it yet
    }
    try {
      const { size } = await fh.stat();
      if (size <= this.offset) return "";
      const buf = Buffer.alloc(size - this.offset);
      const { bytesRead } = await fh.read(buf, 0, buf.length, this.offset);
      this.offset += bytesRead;
      return buf.subarray(0, bytesRead).toString("utf8");
    } finally {
      await fh.close();
    }
  }
}

/**
 * A pattern for `phrase` in serial text that still matches when characters came out twice.
 * Serial logs of a loaded host stutter: GRUB's "Minimum Emacs-like screen editing" was logged as
 * "editting" (and a cmdline word as "hugepaggesz") while TCG ran slowly, so an exact match missed
 * GRUB's editor and the boot waited for its timeout. Each character may repeat; nothing else
 * changes, so a different text still does not match.
 */
export function stutterTolerant(phrase: string): string {
  return [...phrase].map((c) => `${c.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}+`).join("");
}

/** Serial text as plain lines: ANSI colours (systemd's status) and \r stripped, blanks dropped. */
export function plainLines(text: string): string[] {
  return text
    // eslint-disable-next-line no-control-regex -- ESC is exactly what we strip
    .replace(/\x1b\[[0-9;?]*[A-Za-z]/g, "")
    .split(/\r?\n|\r/)
    .map((l) => l.trimEnd())
    .filter((l) => l.trim() !== "");
}

/**
 * Lines that say why a boot stopped, most specific first: the kernel's panic, the messages of
 * Kiln's initramfs hook (they start with "kiln: "; its progress lines follow "Begin: "), and
 * initramfs-tools' own root-device failures.
 */
const CAUSES: RegExp[] = [
  /Kernel panic - not syncing:.*/,
  /(?<!Begin: )kiln: .*/,
  /ALERT! .*/,
  /Gave up waiting for .*/,
  /No init found.*|Target filesystem doesn't have requested .*/,
];

/** One line for an operator: the cause if the log shows one, else the last lines of the log. */
export function explainFailure(serialTail: string, lastLines = 3): string {
  const lines = plainLines(serialTail);
  for (const cause of CAUSES) {
    for (let i = lines.length - 1; i >= 0; i--) {
      const m = lines[i]!.match(cause);
      if (m) return m[0].trim();
    }
  }
  if (lines.length === 0) return "the serial log is empty";
  return `last serial lines: ${lines.slice(-lastLines).map((l) => l.trim()).join(" · ")}`;
}

/** The last `bytes` of a file as text ("" if it does not exist), for failure reasons. */
export async function readTail(file: string, bytes = 16 * 1024): Promise<string> {
  let fh: FileHandle;
  try {
    fh = await open(file, "r");
  } catch {
    return "";
  }
  try {
    const { size } = await fh.stat();
    const start = Math.max(0, size - bytes);
    const buf = Buffer.alloc(size - start);
    const { bytesRead } = await fh.read(buf, 0, buf.length, start);
    return buf.subarray(0, bytesRead).toString("utf8");
  } finally {
    await fh.close();
  }
}
