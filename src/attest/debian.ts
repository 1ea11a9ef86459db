/**
 * What an SBOM says about a Debian root, read from the root itself: the installed packages from
 * dpkg's status file, their licenses from machine-readable `debian/copyright` files
 * (/usr/share/doc/<package>/copyright, format https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/)
 * and the sha256 of each .deb where a copy of it is still at hand.
 */
import { createHash, randomUUID } from "node:crypto";
import { createReadStream } from "node:fs";
import { lstat, readFile, rename, writeFile } from "node:fs/promises";
import path from "node:path";
import { PackageURL } from "packageurl-js";
import { createRequire } from "node:module";
import { resolveInRoot } from "../host/root-path.js";

export interface DebPackage {
  name: string;
  version: string;
  /** dpkg architecture: amd64, all, … */
  arch: string;
  /** The Source field's package name, when it differs from the binary's. */
  source?: string;
  /** Depends and Pre-Depends: each group is a list of alternatives (package names, qualifiers dropped). */
  depends: string[][];
  /** Names this package provides (virtual packages), for resolving dependencies. */
  provides: string[];
  /** SPDX license expression from the copyright file, or "NOASSERTION". */
  license: string;
  /** The Debian license names behind each LicenseRef- in `license`, by id. */
  licenseRefs: Record<string, string>;
  /** sha256 (hex) of the .deb, when a copy was found. */
  debSha256?: string;
}

/** Paragraphs of a deb822 file (dpkg status, control, machine-readable copyright): field name (lower case) → value. */
export function parseDeb822(text: string): Array<Map<string, string>> {
  const paragraphs: Array<Map<string, string>> = [];
  let current = new Map<string, string>();
  let last: string | undefined;
  for (const line of text.split("\n")) {
    if (line.trim() === "") {
      if (current.size > 0) paragraphs.push(current);
      current = new Map();
      last = undefined;
      continue;
    }
    if (line.startsWith("#")) continue;
    if ((line.startsWith(" ") || line.startsWith("\t")) && last) {
      current.set(last, `${current.get(last)!}\n${line}`);
      continue;
    }
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    last = line.slice(0, colon).trim().toLowerCase();
    current.set(last, line.slice(colon + 1).trim());
  }
  if (current.size > 0) paragraphs.push(current);
  return paragraphs;
}

/** Names in a Depends-style field: "a (>= 1) | b:any, c [amd64]" → [["a", "b"], ["c"]]. */
export function parseRelations(value: string | undefined): string[][] {
  if (!value) return [];
  return value
    .split(",")
    .map((group) =>
      group
        .split("|")
        .map((alt) => alt.trim().split(/[\s([<]/, 1)[0]!.split(":", 1)[0]!)
        .filter((n) => n !== ""),
    )
    .filter((g) => g.length > 0);
}

/** The packages dpkg lists as installed (Status "… installed"), sorted by name and architecture. */
export function parseDpkgStatus(text: string): Array<Omit<DebPackage, "license" | "licenseRefs" | "debSha256">> {
  const out: Array<Omit<DebPackage, "license" | "licenseRefs" | "debSha256">> = [];
  for (const p of parseDeb822(text)) {
    const status = p.get("status")?.split(/\s+/);
    if (status?.[2] !== "installed") continue;
    const name = p.get("package");
    const version = p.get("version");
    const arch = p.get("architecture");
    if (!name || !version || !arch) continue;
    const source = p.get("source")?.split(/\s/, 1)[0];
    out.push({
      name,
      version,
      arch,
      ...(source && source !== name ? { source } : {}),
      depends: [...parseRelations(p.get("pre-depends")), ...parseRelations(p.get("depends"))],
      provides: parseRelations(p.get("provides")).flat(),
    });
  }
  return out.sort((a, b) => (a.name === b.name ? a.arch.localeCompare(b.arch) : a.name < b.name ? -1 : 1));
}

/** SPDX's license list (the spdx-license-ids package is that list as JSON). */
const SPDX_IDS = new Map((createRequire(import.meta.url)("spdx-license-ids") as string[]).map((id) => [id.toLowerCase(), id]));
/** Debian short names whose SPDX id is not the same word (the copyright format's table of short names). */
const DEBIAN_NAMES: Record<string, string> = {
  expat: "MIT",
  perl: "(Artistic-1.0-Perl OR GPL-1.0-or-later)",
  "psf-2": "PSF-2.0",
  "python-2.0": "Python-2.0",
  zope: "ZPL-2.1",
  cc0: "CC0-1.0",
};

/**
 * One Debian license short name as an SPDX expression: an SPDX id where the name maps to one
 * (GPL-2+ → GPL-2.0-or-later, Expat → MIT, BSD-3-clause → BSD-3-Clause), else a LicenseRef-
 * carrying the Debian name, recorded in `refs`.
 */
export function spdxFromDebianName(name: string, refs: Record<string, string>): string {
  const exact = SPDX_IDS.get(name.toLowerCase()) ?? DEBIAN_NAMES[name.toLowerCase()];
  if (exact) return exact;
  // GPL-2, GPL-2+, LGPL-2.1+, AGPL-3, GFDL-1.3+: SPDX spells out the version and "-only"/"-or-later";
  // Apache-2, MPL-2: SPDX writes the minor version.
  const m = /^([A-Za-z][A-Za-z0-9-]*?)-(\d+)(?:\.(\d+))?(\+)?$/.exec(name);
  if (m) {
    const version = `${m[2]!}.${m[3] ?? "0"}`;
    const gnu = /^(A?GPL|LGPL|GFDL)$/i.test(m[1]!);
    const id = gnu ? SPDX_IDS.get(`${m[1]!}-${version}-${m[4] ? "or-later" : "only"}`.toLowerCase()) : m[4] ? undefined : SPDX_IDS.get(`${m[1]!}-${version}`.toLowerCase());
    if (id) return id;
  }
  const ref = `LicenseRef-${name.replaceAll("+", "-or-later").replace(/[^A-Za-z0-9.-]+/g, "-").replace(/^-+|-+$/g, "")}`;
  refs[ref] = name;
  return ref;
}

/**
 * The licenses a machine-readable copyright file declares, as one SPDX expression: the License
 * of every Files paragraph, each once, joined with AND ("a or b" inside a field stays OR).
 * "NOASSERTION" for a file that is not machine-readable (no Format field in its first paragraph)
 * or declares no license.
 */
export function licenseFromCopyright(text: string | undefined, refs: Record<string, string>): string {
  if (text === undefined) return "NOASSERTION";
  const paragraphs = parseDeb822(text);
  if (!paragraphs[0]?.get("format")?.includes("copyright-format")) return "NOASSERTION";
  const fields = new Set<string>();
  for (const p of paragraphs.slice(1)) {
    const license = p.get("license")?.split("\n", 1)[0]!.trim();
    if (p.has("files") && license) fields.add(license);
  }
  if (fields.size === 0) return "NOASSERTION";
  const local: Record<string, string> = {};
  const parts = [...fields].sort().map((field) => {
    const alternatives = field.split(/\s+or\s+/i).map((alt) => {
      const all = alt.split(/\s+and\s+/i).map((n) => spdxFromDebianName(n.trim().replace(/,$/, ""), local));
      return all.length > 1 ? `(${all.join(" AND ")})` : all[0]!;
    });
    return alternatives.length > 1 ? `(${alternatives.join(" OR ")})` : alternatives[0]!;
  });
  Object.assign(refs, local);
  const unique = [...new Set(parts)];
  return unique.length === 1 ? unique[0]!.replace(/^\((.*)\)$/, "$1") : unique.join(" AND ");
}

/**
 * `pkg:deb/debian/<name>@<version>?arch=<arch>&distro=debian-<n>` (the purl spec's deb type, whose
 * namespace is the vendor: "debian", or "ubuntu" for an imported Ubuntu root).
 */
export function debPurl(p: Pick<DebPackage, "name" | "version" | "arch">, os: { vendor?: string; distro?: string }): string {
  return new PackageURL("deb", os.vendor ?? "debian", p.name, p.version, { arch: p.arch, ...(os.distro ? { distro: os.distro } : {}) }).toString();
}

/** The file name apt gives a downloaded .deb: name_version_arch.deb, the epoch's ":" as "%3a". */
export function debFileName(p: Pick<DebPackage, "name" | "version" | "arch">): string {
  return `${p.name}_${p.version.replaceAll(":", "%3a")}_${p.arch}.deb`;
}

export interface ReadRootOptions {
  /** Dirs to look for .debs in (Kiln's shared apt archive cache, the root's own apt cache), first found wins. */
  debDirs: readonly string[];
  /** Digests of .debs hashed before (an unchanged rebuild hashes none again). */
  digests?: DebDigestCache;
}

/**
 * The installed packages of a root (a directory: a mounted overlay of a build's layers), with
 * licenses and .deb digests. A root without a dpkg database (not Debian) has none.
 */
export async function readRootPackages(root: string, opts: ReadRootOptions): Promise<DebPackage[]> {
  // Every path in the root is resolved as the image resolves it: its links never lead onto the build host.
  const status = (await readInRoot(root, "/var/lib/dpkg/status")) ?? "";
  const rootArchives = await resolveInRoot(root, "/var/cache/apt/archives");
  const packages: DebPackage[] = [];
  for (const p of parseDpkgStatus(status)) {
    const refs: Record<string, string> = {};
    // A package's doc dir is /usr/share/doc/<name>, often a link to another package's of the same
    // source: followed as the image would follow it, never onto the build host.
    const copyright = await readInRoot(root, `/usr/share/doc/${p.name}/copyright`);
    const license = licenseFromCopyright(copyright, refs);
    // The root's own apt cache is looked in too, but its digests are not kept (its path is this run's mount).
    const debSha256 = (await debDigest(p, opts.debDirs, opts.digests)) ?? (await debDigest(p, [rootArchives]));
    packages.push({ ...p, license, licenseRefs: refs, ...(debSha256 ? { debSha256 } : {}) });
  }
  return packages;
}

/** A regular file of the root, its links followed inside the root; undefined when it is missing or anything else. */
export async function readInRoot(root: string, imagePath: string): Promise<string | undefined> {
  const file = await resolveInRoot(root, imagePath);
  if (!(await lstat(file).catch(() => undefined))?.isFile()) return undefined;
  return readFile(file, "utf8");
}

export async function debDigest(p: Pick<DebPackage, "name" | "version" | "arch">, dirs: readonly string[], digests?: DebDigestCache): Promise<string | undefined> {
  const name = debFileName(p);
  for (const dir of dirs) {
    const file = path.join(dir, name);
    const st = await lstat(file).catch(() => undefined);
    if (!st?.isFile()) continue;
    const known = digests?.get(file, st);
    if (known) return known;
    const hash = createHash("sha256");
    for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
    const sha256 = hash.digest("hex");
    digests?.set(file, st, sha256);
    return sha256;
  }
  return undefined;
}

/**
 * sha256 of .debs by path, valid while the file's device, inode, size and mtime are unchanged: a
 * .deb in apt's cache is never rewritten in place (apt and mmdebstrap replace files), so hashing
 * 100+ MB of packages again on every build is not needed. Kept as JSON beside the archive cache;
 * written whole and renamed into place, so concurrent builds at worst each keep their own.
 */
export class DebDigestCache {
  private entries = new Map<string, { id: string; sha256: string }>();
  private changed = false;
  constructor(private readonly file: string) {}

  static async open(file: string): Promise<DebDigestCache> {
    const c = new DebDigestCache(file);
    try {
      const data = JSON.parse(await readFile(file, "utf8")) as Record<string, { id: string; sha256: string }>;
      for (const [k, v] of Object.entries(data)) if (typeof v?.id === "string" && /^[0-9a-f]{64}$/.test(v.sha256)) c.entries.set(k, v);
    } catch {
      // Missing or unreadable: start empty, it is only a cache.
    }
    return c;
  }

  private static id(st: { dev: number; ino: number; size: number; mtimeMs: number }): string {
    return `${st.dev}:${st.ino}:${st.size}:${Math.round(st.mtimeMs)}`;
  }

  get(file: string, st: { dev: number; ino: number; size: number; mtimeMs: number }): string | undefined {
    const e = this.entries.get(file);
    return e && e.id === DebDigestCache.id(st) ? e.sha256 : undefined;
  }

  set(file: string, st: { dev: number; ino: number; size: number; mtimeMs: number }, sha256: string): void {
    this.entries.set(file, { id: DebDigestCache.id(st), sha256 });
    this.changed = true;
  }

  /** Writes the cache, dropping entries of files that are gone. */
  async save(): Promise<void> {
    if (!this.changed) return;
    const keep: Record<string, { id: string; sha256: string }> = {};
    for (const [k, v] of this.entries) if (await lstat(k).catch(() => undefined)) keep[k] = v;
    // One tmp name per write: builds in one process (the service's workers) save concurrently.
    const tmp = `${this.file}.${randomUUID()}.tmp`;
    await writeFile(tmp, JSON.stringify(keep));
    await rename(tmp, this.file);
  }
}
