/**
 * What both SBOMs describe, gathered once: the image (recipe, artifacts) and the Debian packages
 * of its root and of each flavor (the packages a flavor's kernel layer adds or changes).
 */
import { createHash } from "node:crypto";
import type { ResultArtifact } from "../artifacts/result.js";
import { debPurl, type DebPackage } from "./debian.js";

export interface FlavorPackages {
  flavor: string;
  /** Packages of the flavor's root that the root itself does not have in this very version. */
  packages: DebPackage[];
}

export interface ImageInventory {
  /** The recipe's name. */
  name: string;
  recipeSha256: string;
  /** How the SBOMs say the image was made, when not from the recipe `recipeSha256` names (a customize job's image). */
  madeFrom?: string;
  kilnVersion: string;
  /** The time the SBOMs state (SOURCE_DATE_EPOCH or the root's package database), never "now". */
  created: Date;
  /** purl namespace: the root's os-release ID ("debian" when it does not say). */
  vendor?: string;
  /** purl distro qualifier, e.g. "debian-12"; undefined when the root does not say. */
  distro?: string;
  root: DebPackage[];
  flavors: FlavorPackages[];
  /** The artifacts the SBOMs describe, with their digests. */
  artifacts: ResultArtifact[];
}

/** The packages of a flavor's root that are not in the root with the same version and architecture. */
export function addedPackages(root: readonly DebPackage[], flavorRoot: readonly DebPackage[]): DebPackage[] {
  const inRoot = new Set(root.map((p) => `${p.name}\0${p.arch}\0${p.version}`));
  return flavorRoot.filter((p) => !inRoot.has(`${p.name}\0${p.arch}\0${p.version}`));
}

/** Each distinct package once (a package two flavors add is one package), by purl, in purl order. */
export function allPackages(inv: ImageInventory): Array<{ purl: string; pkg: DebPackage; inRoot: boolean; flavors: string[] }> {
  const byPurl = new Map<string, { purl: string; pkg: DebPackage; inRoot: boolean; flavors: string[] }>();
  const add = (pkg: DebPackage, flavor?: string) => {
    const purl = debPurl(pkg, inv);
    const e = byPurl.get(purl) ?? { purl, pkg, inRoot: false, flavors: [] };
    if (flavor) e.flavors.push(flavor);
    else e.inRoot = true;
    byPurl.set(purl, e);
  };
  for (const p of inv.root) add(p);
  for (const f of inv.flavors) for (const p of f.packages) add(p, f.flavor);
  return [...byPurl.values()].sort((a, b) => (a.purl < b.purl ? -1 : a.purl > b.purl ? 1 : 0));
}

/**
 * Resolves a package's Depends to the packages of its root that satisfy them: per group the first
 * alternative installed under that name, else one that Provides it. Groups nothing satisfies
 * (a dependency on a package of another architecture not installed) are left out.
 */
export function resolveDepends(pkg: DebPackage, installed: readonly DebPackage[]): DebPackage[] {
  const { byName, providers } = indexOf(installed);
  const pick = (cands: DebPackage[] | undefined) => cands?.find((c) => c.arch === pkg.arch) ?? cands?.find((c) => c.arch === "all") ?? cands?.[0];
  const out: DebPackage[] = [];
  for (const group of pkg.depends) {
    const hit = group.map((n) => pick(byName.get(n))).find(Boolean) ?? group.map((n) => pick(providers.get(n))).find(Boolean);
    if (hit && hit !== pkg && !out.includes(hit)) out.push(hit);
  }
  return out;
}

const indexes = new WeakMap<readonly DebPackage[], { byName: Map<string, DebPackage[]>; providers: Map<string, DebPackage[]> }>();

/** Packages by name and by what they provide, made once per package list (every package of it is resolved against it). */
function indexOf(installed: readonly DebPackage[]) {
  let index = indexes.get(installed);
  if (!index) {
    index = { byName: new Map(), providers: new Map() };
    for (const p of installed) {
      index.byName.set(p.name, [...(index.byName.get(p.name) ?? []), p]);
      for (const v of p.provides) index.providers.set(v, [...(index.providers.get(v) ?? []), p]);
    }
    indexes.set(installed, index);
  }
  return index;
}

/** A name-based UUID (RFC 4122 version 5, URL namespace) of `name`: the same inputs give the same document ids. */
export function uuidV5(name: string): string {
  const ns = Buffer.from("6ba7b8119dad11d180b400c04fd430c8", "hex");
  const h = createHash("sha1").update(ns).update(name).digest();
  h[6] = (h[6]! & 0x0f) | 0x50;
  h[8] = (h[8]! & 0x3f) | 0x80;
  const x = h.subarray(0, 16).toString("hex");
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

/** What makes one image's SBOM different from another's: recipe and artifact digests. */
export function inventoryIdentity(inv: ImageInventory, format: string): string {
  return uuidV5(`kiln:${format}:${inv.name}:${inv.recipeSha256}:${inv.artifacts.map((a) => `${a.path}=${a.sha256}`).join(",")}`);
}

/** RFC 3339 to the second, as SPDX wants it (YYYY-MM-DDThh:mm:ssZ). */
export function isoSeconds(d: Date): string {
  return d.toISOString().replace(/\.\d+Z$/, "Z");
}

/** The packages installed in a flavor's root: the root's, with the flavor's additions and changes. */
export function flavorInstalled(inv: ImageInventory, f: FlavorPackages): DebPackage[] {
  const changed = new Set(f.packages.map((p) => `${p.name}\0${p.arch}`));
  return [...inv.root.filter((p) => !changed.has(`${p.name}\0${p.arch}`)), ...f.packages];
}
