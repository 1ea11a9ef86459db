/**
 * Retention, as maas-images' `clean-md` + `find-orphans` + `reap-orphans` (meph2-util; docs/streams.md#retention-and-promotion):
 * metadata keeps the newest N versions of each product at once; the files nobody references any
 * more are deleted only once they have been unreferenced for a grace period (default 3 days), so a
 * client that read the old products file a moment ago still finds every file it was promised.
 */
import { readdir, rm, rmdir } from "node:fs/promises";
import path from "node:path";
import { versionsNewestFirst, type ProductsFile } from "./format.js";
import type { StreamState } from "./stream-dir.js";

export interface PrunedVersion {
  product: string;
  version: string;
}

/** Drops all but the newest `keep` versions of every product (and products left with none). */
export function pruneVersions(f: ProductsFile, keep: number): PrunedVersion[] {
  const pruned: PrunedVersion[] = [];
  for (const [name, p] of Object.entries(f.products)) {
    for (const v of versionsNewestFirst(p).slice(keep)) {
      delete p.versions[v];
      pruned.push({ product: name, version: v });
    }
    if (Object.keys(p.versions).length === 0) delete f.products[name];
  }
  return pruned;
}

export function referencedPaths(files: ProductsFile[]): Set<string> {
  const out = new Set<string>();
  for (const f of files) {
    for (const p of Object.values(f.products)) {
      for (const v of Object.values(p.versions ?? {})) for (const i of Object.values(v.items ?? {})) if (typeof i.path === "string") out.add(i.path);
    }
  }
  return out;
}

export interface OrphanReport {
  /** Files that became unreferenced now (their grace period starts). */
  orphaned: string[];
  /** Files deleted: unreferenced for longer than the grace period. */
  reaped: string[];
  /** Still waiting: path → when it may go. */
  waiting: Record<string, string>;
}

/**
 * Updates the orphan ledger in `state` and deletes what has waited long enough. Only the
 * top-level folders items live in (`state.roots`, plus those of `referenced`) are swept: a
 * `gpg.key` or anything else an operator keeps in the stream folder is not Kiln's to delete.
 */
export async function reconcileOrphans(root: string, referenced: Set<string>, state: StreamState, now: Date, graceSeconds: number): Promise<OrphanReport> {
  const roots = new Set(state.roots);
  for (const p of referenced) if (p.includes("/")) roots.add(p.split("/")[0]!);
  roots.delete("streams");
  roots.delete(".kiln");
  state.roots = [...roots].sort();

  const present = new Set<string>();
  for (const r of roots) for (const f of await listFiles(root, r)) present.add(f);

  const report: OrphanReport = { orphaned: [], reaped: [], waiting: {} };
  for (const p of Object.keys(state.orphans)) if (referenced.has(p) || !present.has(p)) delete state.orphans[p];
  for (const p of [...present].sort()) {
    if (referenced.has(p) || p.includes(".tmp-")) continue;
    const since = state.orphans[p];
    if (since === undefined) {
      state.orphans[p] = now.toISOString();
      report.orphaned.push(p);
      if (graceSeconds > 0) {
        report.waiting[p] = new Date(now.getTime() + graceSeconds * 1000).toISOString();
        continue;
      }
    }
    const due = new Date(state.orphans[p]!).getTime() + graceSeconds * 1000;
    if (now.getTime() >= due) {
      await rm(path.join(root, p), { force: true });
      delete state.orphans[p];
      report.reaped.push(p);
    } else {
      report.waiting[p] = new Date(due).toISOString();
    }
  }
  for (const r of roots) await removeEmptyDirs(path.join(root, r));
  return report;
}

async function listFiles(root: string, rel: string): Promise<string[]> {
  const out: string[] = [];
  const entries = await readdir(path.join(root, rel), { withFileTypes: true }).catch(() => []);
  for (const e of entries) {
    const r = `${rel}/${e.name}`;
    if (e.isDirectory()) out.push(...(await listFiles(root, r)));
    else if (e.isFile()) out.push(r);
  }
  return out;
}

/** Removes empty folders under `dir`, deepest first, and `dir` itself when it ends up empty. */
async function removeEmptyDirs(dir: string): Promise<boolean> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => undefined);
  if (!entries) return false;
  let empty = true;
  for (const e of entries) {
    if (e.isDirectory() && (await removeEmptyDirs(path.join(dir, e.name)))) continue;
    empty = false;
  }
  if (empty) await rmdir(dir).catch(() => (empty = false));
  return empty;
}

/** `3d`, `12h`, `30m`, `90s` or `0` → seconds; undefined when it is none of those. */
export function parseDuration(s: string): number | undefined {
  const m = /^(\d+)\s*([smhd]?)$/.exec(s.trim());
  if (!m) return undefined;
  return Number(m[1]) * { "": 1, s: 1, m: 60, h: 3600, d: 86400 }[m[2] as "" | "s" | "m" | "h" | "d"];
}
