/**
 * What apt's lists in a root (/var/lib/apt/lists) say about the packages installed there: which
 * suite offered each installed version and the sha256 the Packages index gives for its .deb, and
 * each source's Release file (date, digest). Read by every stage that ran `apt-get update` at its
 * end, before Kiln empties the lists (images ship none), and kept in the stage's cache entry
 * (facts.aptIndex), so a lock can be written from cached layers too.
 *
 * apt names list files after the URI with the scheme dropped and `/` as `_`
 * (`deb.debian.org_debian_dists_bookworm_InRelease`, `…_dists_bookworm_main_binary-amd64_Packages`).
 */
import { createHash } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import type { LockedSource } from "./lock.js";

export interface AptIndex {
  sources: LockedSource[];
  /** By `name version arch`: the suite offering it and the index's sha256 of its .deb. */
  packages: Record<string, { suite: string; sha256?: string }>;
}

export const indexKey = (p: { name: string; version: string; arch: string }) => `${p.name} ${p.version} ${p.arch}`;

interface ReleaseFile {
  prefix: string;
  uri: string;
  suite: string;
  release: "InRelease" | "Release";
  file: string;
}

/** A part of a list file's name as apt wrote it: `/` became `_`, and `_ ~ %` … were %-quoted (apt's URItoFileName). */
function unquote(part: string): string {
  const s = part.replaceAll("_", "/");
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** The Release files of a lists dir (InRelease preferred), by the prefix their index files share. */
function releaseFiles(names: readonly string[]): ReleaseFile[] {
  const out = new Map<string, ReleaseFile>();
  for (const n of names) {
    const m = /^(.*)_dists_(.*)_(InRelease|Release)$/.exec(n);
    if (!m) continue;
    const prefix = n.slice(0, n.length - m[3]!.length);
    const r: ReleaseFile = { prefix, uri: unquote(m[1]!), suite: unquote(m[2]!), release: m[3] as "InRelease" | "Release", file: n };
    if (!out.has(prefix) || r.release === "InRelease") out.set(prefix, r);
  }
  return [...out.values()];
}

/**
 * Reads the lists dir for the packages `installed` names. Packages indexes kept compressed
 * (Acquire::GzipIndexes) are not read: their packages get no suite or index sha256.
 */
export async function readAptIndex(listsDir: string, installed: ReadonlyArray<{ name: string; version: string; arch: string }>): Promise<AptIndex> {
  const names = (await readdir(listsDir).catch(() => [] as string[])).sort();
  const releases = releaseFiles(names);
  const want = new Map<string, Set<string>>(); // name → "version arch"
  for (const p of installed) {
    let s = want.get(p.name);
    if (!s) want.set(p.name, (s = new Set()));
    s.add(`${p.version} ${p.arch}`);
  }
  const sources: LockedSource[] = [];
  const packages: AptIndex["packages"] = {};
  for (const r of releases.sort((a, b) => (a.suite < b.suite ? -1 : a.suite > b.suite ? 1 : 0))) {
    const text = await readFile(path.join(listsDir, r.file));
    const date = /^Date:\s*(.+)$/m.exec(text.toString("utf8"))?.[1]?.trim();
    const components = new Set<string>();
    for (const n of names) {
      if (!n.startsWith(r.prefix) || !n.endsWith("_Packages")) continue;
      const m = /^(.*)_binary-[^_]+_Packages$/.exec(n.slice(r.prefix.length));
      if (!m) continue;
      components.add(unquote(m[1]!));
      scanPackages(await readFile(path.join(listsDir, n), "utf8"), want, (name, version, arch, sha256) => {
        const k = `${name} ${version} ${arch}`;
        if (!packages[k]) packages[k] = { suite: r.suite, ...(sha256 ? { sha256 } : {}) };
      });
    }
    sources.push({ uri: r.uri, suite: r.suite, components: [...components].sort(), ...(date ? { date } : {}), release: r.release, sha256: createHash("sha256").update(text).digest("hex") });
  }
  return { sources, packages };
}

/** Calls `found` for every stanza of a Packages index whose name, version and architecture `want` has. */
export function scanPackages(text: string, want: ReadonlyMap<string, ReadonlySet<string>>, found: (name: string, version: string, arch: string, sha256?: string) => void): void {
  let at = 0;
  while (at < text.length) {
    let end = text.indexOf("\n\n", at);
    if (end < 0) end = text.length;
    const stanza = text.slice(at, end);
    at = end + 2;
    const name = /^Package:\s*(\S+)/m.exec(stanza)?.[1];
    const versions = name === undefined ? undefined : want.get(name);
    if (!versions) continue;
    const version = /^Version:\s*(\S+)/m.exec(stanza)?.[1];
    const arch = /^Architecture:\s*(\S+)/m.exec(stanza)?.[1];
    if (!version || !arch || !versions.has(`${version} ${arch}`)) continue;
    found(name!, version, arch, /^SHA256:\s*([0-9a-f]{64})/m.exec(stanza)?.[1]);
  }
}

/** Two stages' indexes as one: the later stage's entries win (its update is the newer). */
export function mergeIndexes(list: ReadonlyArray<AptIndex | undefined>): AptIndex {
  const sources = new Map<string, LockedSource>();
  const packages: AptIndex["packages"] = {};
  for (const i of list) {
    if (!i) continue;
    for (const s of i.sources) sources.set(`${s.uri} ${s.suite}`, s);
    Object.assign(packages, i.packages);
  }
  return { sources: [...sources.values()], packages };
}
