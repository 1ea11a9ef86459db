/**
 * out/kiln.lock (docs/lock.md): every package of the root and of each flavor exactly (name,
 * version, architecture, source suite, the .deb's sha256), the import's base image digest and
 * each apt source's Release file (date, digest). JSON, sorted, so the same packages give the same
 * bytes; `kiln build --lock FILE` reads it back and installs exactly those versions.
 */
import { readFile } from "node:fs/promises";
import { z } from "zod";
import { sha256Hex } from "../cache/key.js";
import { KilnError } from "../errors.js";

/** The lock format's version: a reader refuses any other (a newer Kiln's lock it cannot honour). */
export const LOCK_VERSION = 1;
export const LOCK_FILE = "kiln.lock";

const hex64 = z.string().regex(/^[0-9a-f]{64}$/, "a sha256: 64 lower-case hex digits");
const word = (what: string) => z.string().regex(/^[A-Za-z0-9.+~:_-]+$/, `${what}: letters, digits and . + ~ : _ - only`);

export const LockedPackage = z.strictObject({
  name: z.string().regex(/^[a-z0-9][a-z0-9.+-]*$/, "a Debian package name (lower case, digits, . + -)"),
  version: word("a Debian version"),
  arch: word("a dpkg architecture"),
  /** The suite (dists/ name) of the apt source it came from; absent where no index offered it (an import's own packages). */
  suite: z.string().min(1).optional(),
  /** sha256 of the .deb; absent when neither an index nor a .deb was at hand. */
  sha256: hex64.optional(),
});
export type LockedPackage = z.output<typeof LockedPackage>;

export const LockedSource = z.strictObject({
  /** Where apt fetched it from, as apt names it in /var/lib/apt/lists (scheme dropped): `deb.debian.org/debian`. */
  uri: z.string().min(1),
  suite: z.string().min(1),
  components: z.array(z.string().min(1)),
  /** The Release file's Date field. */
  date: z.string().min(1).optional(),
  /** Which file apt kept: InRelease (signed inline) or Release. */
  release: z.enum(["InRelease", "Release"]),
  /** sha256 of that file. */
  sha256: hex64,
});
export type LockedSource = z.output<typeof LockedSource>;

export const KilnLock = z.strictObject({
  kilnLock: z.literal(LOCK_VERSION, { message: `the lock format version: this Kiln reads ${LOCK_VERSION}` }),
  /** dpkg architecture of the root. */
  arch: z.string().min(1),
  /** An import's base image. */
  base: z.strictObject({ image: z.strictObject({ file: z.string().min(1), sha256: hex64 }) }).optional(),
  sources: z.array(LockedSource),
  root: z.array(LockedPackage),
  /** Per flavor, the packages its root has beyond the root's (new, or another version). */
  flavors: z.record(z.string(), z.array(LockedPackage)),
});
export type KilnLock = z.output<typeof KilnLock>;

const byPackage = (a: LockedPackage, b: LockedPackage) =>
  a.name === b.name ? (a.arch < b.arch ? -1 : a.arch > b.arch ? 1 : 0) : a.name < b.name ? -1 : 1;

/** The lock's bytes: fixed key order, packages by name and arch, sources by uri and suite, flavors by name. */
export function formatLock(lock: KilnLock): string {
  const pkg = (p: LockedPackage) => ({ name: p.name, version: p.version, arch: p.arch, ...(p.suite ? { suite: p.suite } : {}), ...(p.sha256 ? { sha256: p.sha256 } : {}) });
  const ordered = {
    kilnLock: lock.kilnLock,
    arch: lock.arch,
    ...(lock.base ? { base: { image: { file: lock.base.image.file, sha256: lock.base.image.sha256 } } } : {}),
    sources: [...lock.sources]
      .sort((a, b) => (a.uri === b.uri ? (a.suite < b.suite ? -1 : a.suite > b.suite ? 1 : 0) : a.uri < b.uri ? -1 : 1))
      .map((s) => ({ uri: s.uri, suite: s.suite, components: [...s.components].sort(), ...(s.date ? { date: s.date } : {}), release: s.release, sha256: s.sha256 })),
    root: [...lock.root].sort(byPackage).map(pkg),
    flavors: Object.fromEntries(Object.keys(lock.flavors).sort().map((f) => [f, [...lock.flavors[f]!].sort(byPackage).map(pkg)])),
  };
  return JSON.stringify(ordered, null, 2) + "\n";
}

/** Parses and checks a lock; a bad one is INPUT_INVALID (exit 2) naming the file and every bad field. */
export function parseLock(text: string, file: string): KilnLock {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new KilnError("INPUT_INVALID", `${file}: not a Kiln lock (not JSON: ${(e as Error).message})`, { hint: "give the kiln.lock a build wrote into its out dir" });
  }
  const r = KilnLock.safeParse(json);
  if (!r.success) {
    const fields = r.error.issues.map((i) => `${fieldPath(i.path)}: ${i.message}`);
    throw new KilnError("INPUT_INVALID", `${file}: not a valid Kiln lock: ${fields.join("; ")}`, { hint: "docs/lock.md describes the format; take the kiln.lock a build wrote" });
  }
  const seen = new Set<string>();
  const dup: string[] = [];
  for (const [where, list] of [["root", r.data.root] as const, ...Object.entries(r.data.flavors).map(([f, l]) => [`flavors.${f}`, l] as const)]) {
    seen.clear();
    list.forEach((p, i) => {
      const k = `${p.name}:${p.arch}`;
      if (seen.has(k)) dup.push(`${where}[${i}]: ${p.name} (${p.arch}) is listed twice`);
      seen.add(k);
    });
  }
  if (dup.length) throw new KilnError("INPUT_INVALID", `${file}: not a valid Kiln lock: ${dup.join("; ")}`);
  return r.data;
}

export async function readLock(file: string): Promise<{ lock: KilnLock; sha256: string }> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (e) {
    throw new KilnError("INPUT_INVALID", `--lock ${file}: cannot read it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  return { lock: parseLock(text, file), sha256: sha256Hex(text) };
}

function fieldPath(p: ReadonlyArray<PropertyKey>): string {
  if (p.length === 0) return "(top level)";
  return p.map((x, i) => (typeof x === "number" ? `[${x}]` : i === 0 ? String(x) : `.${String(x)}`)).join("");
}

/**
 * A lock pins the base image as it pins packages: an import built --lock must import the very
 * image the lock was made from, and a lock of an import is no lock of a bootstrap (or the other
 * way round). Compared by digest only: the image may have moved since. Exit 2 naming base.image.
 */
export function checkLockedBase(lock: KilnLock, file: string, recipe: { file: string; sha256: string } | undefined): void {
  const pinned = lock.base?.image;
  const fix = "build from the image the lock was made from, or without --lock";
  if (pinned && !recipe) {
    throw new KilnError("INPUT_INVALID", `--lock ${file}: base.image: the lock was made from an import of ${pinned.file} (sha256 ${pinned.sha256}), but the recipe bootstraps Debian`, { hint: fix });
  }
  if (!pinned && recipe) {
    throw new KilnError("INPUT_INVALID", `--lock ${file}: base.image: the recipe imports ${recipe.file}, but the lock pins no base image (it was made by a bootstrap)`, { hint: fix });
  }
  if (pinned && recipe && pinned.sha256 !== recipe.sha256) {
    throw new KilnError("INPUT_INVALID", `--lock ${file}: base.image: the recipe's image ${recipe.file} has sha256 ${recipe.sha256}, the lock pins ${pinned.sha256} (${pinned.file})`, { hint: fix });
  }
}

/** The packages a flavor's root has per the lock: the root's, with the flavor's own over them. */
export function flavorPackages(lock: KilnLock, flavor: string | undefined): LockedPackage[] {
  const m = new Map(lock.root.map((p) => [`${p.name}:${p.arch}`, p]));
  for (const p of (flavor !== undefined ? lock.flavors[flavor] : undefined) ?? []) m.set(`${p.name}:${p.arch}`, p);
  return [...m.values()];
}

/**
 * apt preferences that make apt choose exactly the locked versions (Pin-Priority above 1000 also
 * downgrades): one stanza per package and architecture. A pin on a version the sources do not
 * offer matches nothing, which is why a locked build checks availability first (lock-check.ts).
 */
export function aptPreferences(packages: readonly LockedPackage[]): string {
  return [...packages]
    .sort(byPackage)
    .filter((p, i, all) => i === 0 || all[i - 1]!.name !== p.name) // one stanza per name: images are single-architecture
    .map((p) => `Package: ${p.name}\nPin: version ${p.version}\nPin-Priority: 1001\n`)
    .join("\n");
}

/** Versions that differ between what a locked build installed and its lock: "name (arch): lock X, installed Y". */
export function lockMismatches(want: readonly LockedPackage[], got: readonly LockedPackage[]): string[] {
  const have = new Map(got.map((p) => [`${p.name}:${p.arch}`, p]));
  const out: string[] = [];
  for (const w of want) {
    const g = have.get(`${w.name}:${w.arch}`);
    if (!g) continue; // a lock may name more than this recipe installs (the kernel of a flavor it does not have)
    if (g.version !== w.version) out.push(`${w.name} (${w.arch}): the lock has ${w.version}, the build installed ${g.version}`);
    else if (w.sha256 && g.sha256 && w.sha256 !== g.sha256) out.push(`${w.name} ${w.version} (${w.arch}): the lock's .deb sha256 is ${w.sha256}, the build's ${g.sha256}`);
  }
  return out;
}
