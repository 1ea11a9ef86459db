/**
 * Release facts for product fields (`version`, `release_codename`, `release_title`, `support_eol`,
 * `support_esm_eol`). maas-images reads them from python distro_info; Kiln reads the same data
 * file, Debian's distro-info-data (`/usr/share/distro-info/debian.csv`), with a small built-in
 * table for hosts without it.
 */
import { readFile } from "node:fs/promises";

export interface ReleaseInfo {
  /** "12"; the codename when the release has no number yet (sid, testing). */
  version: string;
  codename: string;
  title: string;
  /** YYYY-MM-DD, when known. */
  eol?: string;
  /** Debian LTS end, Kiln's analog of Ubuntu's ESM end. */
  eolLts?: string;
}

// The rows of distro-info-data (as shipped for Debian 12): version,codename,series,created,release,eol,eol-lts,eol-elts.
const BUILT_IN = `11,Bullseye,bullseye,2019-07-06,2021-08-14,2024-08-14,2026-08-31,2029-06-30
12,Bookworm,bookworm,2021-08-14,2023-06-10,2026-07-11,2028-06-30,2033-06-30
13,Trixie,trixie,2023-06-10,2025-08-09,2028-08-09,2030-06-30,2035-06-30`;

export function parseDistroInfo(csv: string): Map<string, ReleaseInfo> {
  const out = new Map<string, ReleaseInfo>();
  for (const line of csv.split("\n")) {
    const [version, codename, series, , , eol, eolLts] = line.split(",").map((f) => f.trim());
    if (!series || series === "series" || !codename) continue;
    out.set(series, {
      version: version || series,
      codename,
      title: version ? `${version} (${codename})` : codename,
      ...(eol ? { eol } : {}),
      ...(eolLts ? { eolLts } : {}),
    });
  }
  return out;
}

export async function debianRelease(series: string, csvFile = "/usr/share/distro-info/debian.csv"): Promise<ReleaseInfo> {
  const text = await readFile(csvFile, "utf8").catch(() => "");
  const info = parseDistroInfo(text).get(series) ?? parseDistroInfo(BUILT_IN).get(series);
  if (info) return info;
  // Unknown to both: a suite name such as "stable" or a derivative's codename. Say only what we know.
  return { version: series, codename: series[0]!.toUpperCase() + series.slice(1), title: series };
}
