/**
 * Before a locked build starts its long steps: do the apt sources still offer every locked
 * version? The host's apt fetches the sources' indexes into a throwaway dir (its own trust: the
 * host's keyrings and APT_CONFIG, as mmdebstrap uses them), and every package of the lock is
 * looked up there by name, version and architecture. Each one missing is named in one error
 * (exit 2), not only the first; a version offered with another .deb sha256 than the lock's is
 * refused the same way (the archive's file under that version changed).
 */
import { mkdir, mkdtemp, writeFile } from "node:fs/promises";
import path from "node:path";
import { KilnError } from "../errors.js";
import { exec, type LogSink } from "../host/exec.js";
import { removeTree } from "../host/workdir.js";
import { readAptIndex, scanPackages } from "./apt-index.js";
import { readdir, readFile } from "node:fs/promises";
import type { KilnLock, LockedPackage } from "./lock.js";

export interface LockCheckOptions {
  /** The `deb URI SUITE COMPONENTS` lines to look in: the recipe's, and the lock's own sources. */
  aptLines: readonly string[];
  workDir: string;
  log: LogSink;
  signal?: AbortSignal;
  env?: Record<string, string>;
}

/** Every distinct package of the lock (root and flavors), once. */
export function lockedPackages(lock: KilnLock): LockedPackage[] {
  const m = new Map<string, LockedPackage>();
  for (const p of [...lock.root, ...Object.values(lock.flavors).flat()]) m.set(`${p.name} ${p.version} ${p.arch}`, p);
  return [...m.values()];
}

/** The lock's sources as apt lines (the lock keeps the URI as apt names its lists: no scheme means http). */
export function lockAptLines(lock: KilnLock): string[] {
  return lock.sources.map((s) => `deb ${/^[a-z+]+:/.test(s.uri) ? s.uri : `http://${s.uri}`} ${s.suite} ${s.components.join(" ") || "main"}`);
}

export async function checkLockOffered(lock: KilnLock, file: string, o: LockCheckOptions): Promise<void> {
  let want = lockedPackages(lock).filter((p) => p.suite !== undefined); // an import's own packages come from no source
  if (want.length === 0) return;
  await mkdir(o.workDir, { recursive: true });
  const dir = await mkdtemp(path.join(o.workDir, "lock-check-"));
  try {
    const lists = path.join(dir, "lists");
    await mkdir(path.join(lists, "partial"), { recursive: true });
    await mkdir(path.join(dir, "cache"), { recursive: true });
    await writeFile(path.join(dir, "sources.list"), [...new Set(o.aptLines)].join("\n") + "\n");
    await writeFile(path.join(dir, "status"), "");
    // prettier-ignore
    const r = await exec([
      "apt-get", "update", "-q",
      "-o", `Dir::State::Lists=${lists}`, "-o", `Dir::State::status=${path.join(dir, "status")}`,
      "-o", `Dir::Cache=${path.join(dir, "cache")}`, "-o", `Dir::Etc::SourceList=${path.join(dir, "sources.list")}`,
      "-o", "Dir::Etc::SourceParts=/nonexistent", "-o", `APT::Architecture=${lock.arch}`, "-o", "APT::Sandbox::User=root",
      // Plain index files to read (hosts such as Docker images keep them compressed).
      "-o", "Acquire::Retries=3", "-o", "Acquire::Languages=none", "-o", "Acquire::GzipIndexes=false",
    ], { log: o.log, signal: o.signal, workDir: o.workDir, env: o.env, okCodes: [0, 100] });
    // A source the host's apt could not fetch (unreachable, or signed by a key only the image trusts)
    // proves nothing missing: its packages are left to the build, which fails if it cannot install them.
    const fetched = new Set((await readAptIndex(lists, [])).sources.map((s) => s.suite));
    const unchecked = want.filter((p) => !fetched.has(p.suite!));
    if (r.code !== 0 || unchecked.length) o.log.line(`lock check: apt-get update failed for some sources; ${unchecked.length} packages from them are checked only as the build installs them`);
    want = want.filter((p) => fetched.has(p.suite!));
    const found = new Map<string, string | undefined>();
    const byName = new Map<string, Set<string>>();
    for (const p of want) (byName.get(p.name) ?? byName.set(p.name, new Set()).get(p.name)!).add(`${p.version} ${p.arch}`);
    for (const n of (await readdir(lists)).filter((x) => x.endsWith("_Packages"))) {
      scanPackages(await readFile(path.join(lists, n), "utf8"), byName, (name, version, arch, sha256) => {
        if (!found.has(`${name} ${version} ${arch}`) || sha256) found.set(`${name} ${version} ${arch}`, sha256);
      });
    }
    const missing: string[] = [];
    const changed: string[] = [];
    for (const p of want.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
      const k = `${p.name} ${p.version} ${p.arch}`;
      if (!found.has(k)) missing.push(`${p.name}=${p.version} (${p.arch})`);
      else if (p.sha256 && found.get(k) && found.get(k) !== p.sha256) changed.push(`${p.name}=${p.version} (${p.arch}): the sources' .deb has sha256 ${found.get(k)!}, the lock ${p.sha256}`);
    }
    const problems = [
      ...(missing.length ? [`${missing.length} locked package version${missing.length === 1 ? " is" : "s are"} not offered by the apt sources: ${missing.join(", ")}`] : []),
      ...(changed.length ? [`${changed.length} differ from the lock: ${changed.join("; ")}`] : []),
    ];
    if (problems.length) {
      throw new KilnError("INPUT_INVALID", `--lock ${file}: ${problems.join("; ")}`, {
        hint: "the archive no longer has those versions: point base.mirror (or the recipe's repositories) at an archive that does, e.g. snapshot.debian.org, or build without --lock for current versions",
      });
    }
    o.log.line(`lock check: all ${want.length} locked package versions are offered by the sources`);
  } finally {
    await removeTree(dir, o.log);
  }
}
