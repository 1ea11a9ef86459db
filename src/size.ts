/**
 * Sizes as people write them, for every flag and recipe field that takes one (--max-recipe-size,
 * `kiln cache prune --max-size`, a recipe's disk and partition sizes): a byte count, or a number
 * with K, M, G or T, optionally followed by "i" and/or "B", in any case. Units are powers of 1024,
 * as sfdisk, du and qemu-img read them: "1G", "1GiB" and "1gb" are all 2^30 bytes. Fractions are
 * allowed ("1.5G") and rounded down to whole bytes. The recipe schema accepts a narrower form
 * (whole M, G or T); every form it accepts parses here to the same bytes.
 */
const SIZE = /^(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?$/i;

const UNIT = { "": 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 } as const;

/** Bytes, or undefined when `text` is not a size: each caller words the error for its own field. */
export function parseSize(text: string): number | undefined {
  const m = SIZE.exec(text.trim());
  if (!m) return undefined;
  return Math.floor(Number(m[1]) * UNIT[m[2]!.toUpperCase() as keyof typeof UNIT]);
}

/** Bytes as people read them, in powers of 1024 with one decimal: "512 B", "1.5 GiB". */
export function formatSize(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}
