/**
 * out/SHA256SUMS in `sha256sum` format ("<hex>  <path>", text mode, one line per file, sorted by
 * path) so that `sha256sum -c SHA256SUMS` in the out dir checks it, and its detached signature
 * SHA256SUMS.gpg (armored), as Debian's and Ubuntu's image publishers ship them.
 */
import { KilnError } from "../errors.js";

export const SUMS_FILE = "SHA256SUMS";
export const SUMS_SIGNATURE = "SHA256SUMS.gpg";

/** A path sha256sum would write without escaping, inside the out dir. */
export function safeRelPath(p: string): boolean {
  return p !== "" && !p.startsWith("/") && !/[\\\n\r]/.test(p) && !p.split("/").some((s) => s === ".." || s === "." || s === "");
}

export function formatSums(entries: ReadonlyArray<{ path: string; sha256: string }>): string {
  const sorted = [...entries].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return sorted
    .map((e) => {
      // The paths are Kiln's own artifact names; anything sha256sum would escape is a bug upstream.
      if (!safeRelPath(e.path) || !/^[0-9a-f]{64}$/.test(e.sha256)) throw new Error(`SHA256SUMS: cannot write ${JSON.stringify(e.path)}`);
      return `${e.sha256}  ${e.path}\n`;
    })
    .join("");
}

/** Reads SHA256SUMS; a line that is not "<64 hex> <space or *><safe relative path>" is an error naming it. */
export function parseSums(text: string): Array<{ path: string; sha256: string }> {
  const out: Array<{ path: string; sha256: string }> = [];
  const lines = text.split("\n");
  if (lines.at(-1) === "") lines.pop();
  lines.forEach((line, i) => {
    const m = /^([0-9a-fA-F]{64}) [ *](.+)$/.exec(line);
    if (!m || !safeRelPath(m[2]!)) throw new KilnError("INPUT_INVALID", `${SUMS_FILE} line ${i + 1}: not "<sha256>  <path inside the out dir>": ${JSON.stringify(line.slice(0, 120))}`);
    out.push({ sha256: m[1]!.toLowerCase(), path: m[2]! });
  });
  return out;
}
