/**
 * `kiln diff A B`: what changed between two builds (out dirs) or two image records. Each side is
 * read into a Snapshot (src/diff/sources.ts); this module compares two of them: packages added,
 * removed and changed (the squashfs.manifest lists), the kernel of each flavor, artifact sizes,
 * and the files of the root (from each squashfs's listing: type and mode, owner, size, link
 * target; not times, which differ between any two builds that are not reproducible).
 */
import type { PackageDiff } from "../catalog/records.js";
import { diffPackages, formatPackageDiff } from "../jobs/package-diff.js";

export interface FileEntry {
  /** `-rw-r--r--` as ls shows it. */
  mode: string;
  owner: string;
  /** Bytes for files and links; `major,minor` for devices; "" for folders (their size is the listing's). */
  size: string;
  target?: string;
}

export interface Snapshot {
  /** What the user named: an out dir or `image <id>`. */
  label: string;
  /** name → version; undefined when the side has no package list. */
  packages?: Map<string, string>;
  /** flavor → kernel. */
  kernels: Record<string, { version: string; kpackage: string }>;
  /** artifact (its path in the out dir, or its key under the image) → bytes. */
  artifacts: Record<string, number>;
  /** path → entry; undefined when the squashfs was not listed. */
  files?: Map<string, FileEntry>;
}

export interface SnapshotDiff {
  a: string;
  b: string;
  /** null: one side has no package list. */
  packages: PackageDiff | null;
  kernels: Array<{ flavor: string; a: string | null; b: string | null; kpackage: string }>;
  artifacts: Array<{ artifact: string; a: number | null; b: number | null }>;
  /** null: files were not compared (a side's squashfs was not listed). */
  files: { added: string[]; removed: string[]; changed: Array<{ path: string; what: string[] }> } | null;
  identical: boolean;
}

export function compareSnapshots(a: Snapshot, b: Snapshot): SnapshotDiff {
  const packages = a.packages && b.packages ? diffPackages(a.packages, b.packages) : null;
  const kernels = [...new Set([...Object.keys(a.kernels), ...Object.keys(b.kernels)])].sort().flatMap((flavor) => {
    const [ka, kb] = [a.kernels[flavor], b.kernels[flavor]];
    if (ka && kb && ka.version === kb.version && ka.kpackage === kb.kpackage) return [];
    return [{ flavor, a: ka?.version ?? null, b: kb?.version ?? null, kpackage: kb?.kpackage ?? ka?.kpackage ?? "" }];
  });
  const artifacts = [...new Set([...Object.keys(a.artifacts), ...Object.keys(b.artifacts)])].sort().flatMap((artifact) => {
    const [sa, sb] = [a.artifacts[artifact] ?? null, b.artifacts[artifact] ?? null];
    return sa === sb ? [] : [{ artifact, a: sa, b: sb }];
  });
  const files = a.files && b.files ? compareFiles(a.files, b.files) : null;
  const packageChanges = packages ? packages.added.length + packages.removed.length + packages.changed.length : 0;
  const fileChanges = files ? files.added.length + files.removed.length + files.changed.length : 0;
  return { a: a.label, b: b.label, packages, kernels, artifacts, files, identical: packageChanges + kernels.length + artifacts.length + fileChanges === 0 };
}

function compareFiles(a: Map<string, FileEntry>, b: Map<string, FileEntry>): NonNullable<SnapshotDiff["files"]> {
  const added = [...b.keys()].filter((p) => !a.has(p)).sort();
  const removed = [...a.keys()].filter((p) => !b.has(p)).sort();
  const changed: Array<{ path: string; what: string[] }> = [];
  for (const [p, ea] of [...a].sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0))) {
    const eb = b.get(p);
    if (!eb) continue;
    const what: string[] = [];
    if (ea.mode !== eb.mode) what.push(`mode ${ea.mode} → ${eb.mode}`);
    if (ea.owner !== eb.owner) what.push(`owner ${ea.owner} → ${eb.owner}`);
    // A link's size is its target's length: the target says it better.
    if (ea.size !== eb.size && !(ea.target !== undefined && eb.target !== undefined)) what.push(`size ${ea.size} → ${eb.size}`);
    if (ea.target !== eb.target) what.push(`target ${ea.target ?? "-"} → ${eb.target ?? "-"}`);
    if (what.length > 0) changed.push({ path: p, what });
  }
  return { added, removed, changed };
}

const LISTING = /^(\S{10}) (\d+\/\d+) +(\d+|\d+, *\d+) \d{4}-\d\d-\d\d \d\d:\d\d (.*)$/;

/** Parses `unsquashfs -lln -d ''` (numeric owners, no prefix): one entry per path, the root ("") left out. */
export function parseSquashfsListing(text: string): Map<string, FileEntry> {
  const files = new Map<string, FileEntry>();
  for (const line of text.split("\n")) {
    const m = LISTING.exec(line);
    if (!m) continue;
    const [, mode, owner, size, rest] = m as unknown as [string, string, string, string, string];
    let p = rest;
    let target: string | undefined;
    if (mode.startsWith("l")) {
      const at = rest.indexOf(" -> ");
      if (at >= 0) [p, target] = [rest.slice(0, at), rest.slice(at + 4)];
    }
    if (p === "") continue;
    files.set(p, { mode, owner, size: mode.startsWith("d") ? "" : size.replace(/\s+/g, ""), ...(target !== undefined ? { target } : {}) });
  }
  return files;
}

function megabytes(n: number | null): string {
  return n === null ? "-" : n >= 1e6 ? `${(n / 1e6).toFixed(1)} MB` : `${n} B`;
}

/** The report as text, section by section; only what differs. */
export function formatSnapshotDiff(d: SnapshotDiff): string[] {
  const lines = [`--- ${d.a}`, `+++ ${d.b}`];
  if (d.packages === null) lines.push("packages: not compared (a side has no package list)");
  else {
    const p = d.packages;
    lines.push(`packages: ${p.added.length} added, ${p.removed.length} removed, ${p.changed.length} changed`);
    lines.push(...formatPackageDiff(p).map((l) => `  ${l}`));
  }
  lines.push(`kernels: ${d.kernels.length === 0 ? "the same" : ""}`.trimEnd());
  for (const k of d.kernels) lines.push(`  ${k.flavor}: ${k.a ?? "(none)"} → ${k.b ?? "(none)"}${k.kpackage ? ` (${k.kpackage})` : ""}`);
  lines.push(`artifacts: ${d.artifacts.length === 0 ? "the same sizes" : ""}`.trimEnd());
  for (const a of d.artifacts) {
    const delta = a.a !== null && a.b !== null ? ` (${a.b >= a.a ? "+" : "-"}${megabytes(Math.abs(a.b - a.a))})` : "";
    lines.push(`  ${a.artifact}: ${megabytes(a.a)} → ${megabytes(a.b)}${delta}`);
  }
  if (d.files === null) lines.push("files: not compared (give --files to fetch the images' squashfs)");
  else {
    const f = d.files;
    lines.push(`files: ${f.added.length} added, ${f.removed.length} removed, ${f.changed.length} changed`);
    lines.push(...f.added.map((p) => `  + ${p}`), ...f.removed.map((p) => `  - ${p}`), ...f.changed.map((c) => `  ~ ${c.path} (${c.what.join(", ")})`));
  }
  lines.push(d.identical ? "no differences" : "they differ");
  return lines;
}
