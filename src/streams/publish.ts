/**
 * `kiln streams publish OUT... --to STREAMDIR`: adds builds (Kiln out dirs) to a MAAS v3 stream.
 *
 * Each out dir becomes one version (`YYYYMMDD`, then `YYYYMMDD.1` … on the same day) of one product
 * per kernel flavor, `<prefix>.<label>:v3:boot:<release>:<arch>:<subarch>[-<kflavor>]`. The
 * squashfs and its manifest are stored once per release/arch/version and shared by every flavor's
 * product; each flavor has its kernel and initrd under `<subarch>/<flavor>/` (maas-images'
 * PATH_FORMATS in meph2/stream.py; docs/streams.md#the-tree). Other artifacts (boot-params, a rootfs tarball, qcow2 and
 * ISO, the SBOMs, provenance and SHA256SUMS) go in as extra items named by their ftype, which MAAS skips.
 */
import { copyFile, lstat, mkdir, readFile } from "node:fs/promises";
import path from "node:path";
import type { BuildResult, ResultArtifact } from "../artifacts/result.js";
import { fileDigests } from "../cache/key.js";
import { KilnError } from "../errors.js";
import { checkSigning, commitStream } from "./commit.js";
import { type ProductsFile, type StreamItem, type StreamProduct } from "./format.js";
import { imageContentId, imageProductName, type StreamNaming } from "./names.js";
import { debianRelease, type ReleaseInfo } from "./releases.js";
import { pruneVersions, type OrphanReport, type PrunedVersion } from "./retention.js";
import type { Signer } from "./sign.js";
import { emptyProducts, StreamDir, type BuildRecord, type StreamState } from "./stream-dir.js";

export interface PublishOptions {
  /** The stream folder (created if missing). */
  to: string;
  label: string;
  naming: StreamNaming;
  /** Keep this many versions per product (all when undefined). */
  keep?: number;
  graceSeconds: number;
  /** The clock: version names, `updated`, the grace period. */
  now: Date;
  signer?: Signer;
  /** Subarch of every product (MAAS `arch/subarch`); default "generic". */
  subarch?: string;
  /** Only these flavors (default: every flavor of each build). */
  flavors?: string[];
  /** Fill in what result.json lacks (an imported base names no os or release). */
  image?: { os?: string; release?: string; arch?: string };
  /** Recipe file the builds came from, recorded for sync. */
  recipeFile?: string;
}

export interface PublishedVersion {
  out: string;
  release: string;
  arch: string;
  version: string;
  products: string[];
}

export interface PublishReport {
  contentId: string;
  published: PublishedVersion[];
  pruned: PrunedVersion[];
  orphans: OrphanReport;
}

/** A build's out dir, read and checked: what publishing needs of it. */
interface OutBuild {
  dir: string;
  result: BuildResult;
  os: string;
  release: string;
  arch: string;
  squashfs: ResultArtifact;
  manifest: ResultArtifact;
  flavors: Map<string, ResultArtifact[]>;
  shared: ResultArtifact[];
}

export async function publish(outs: string[], o: PublishOptions): Promise<PublishReport> {
  const builds = [];
  for (const out of outs) builds.push(await readOut(out, o));
  const dir = new StreamDir(o.to);
  await mkdir(dir.root, { recursive: true });
  const lock = await dir.lock();
  try {
    await checkSigning(dir, o.signer);
    const contentId = imageContentId(o.naming, o.label);
    const products = (await dir.readProducts(contentId)) ?? emptyProducts(contentId, o.now);
    const state = await dir.readState();
    const published: PublishedVersion[] = [];
    for (const b of builds) published.push(await addBuild(dir, products, state, b, o));
    const pruned = o.keep === undefined ? [] : pruneVersions(products, o.keep);
    const orphans = await commitStream(dir, [products], state, o);
    return { contentId, published, pruned, orphans };
  } finally {
    await lock.release();
  }
}

async function readOut(out: string, o: PublishOptions): Promise<OutBuild> {
  const dir = path.resolve(out);
  const file = path.join(dir, "result.json");
  let result: BuildResult;
  try {
    result = JSON.parse(await readFile(file, "utf8")) as BuildResult;
  } catch (e) {
    throw new KilnError("INPUT_INVALID", `${out}: no readable result.json (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); give the out dir of a kiln build`);
  }
  const failed = (result.verify ?? []).filter((v) => !v.ok);
  if (failed.length > 0) {
    throw new KilnError("INPUT_INVALID", `${out}: boot verification failed for ${failed.map((v) => v.flavor).join(", ")}; a stream gets only images that boot`);
  }
  const os = o.image?.os ?? result.image?.os;
  const release = o.image?.release ?? result.image?.release;
  const arch = o.image?.arch ?? result.image?.arch;
  if (!os || !release || !arch) {
    throw new KilnError("INPUT_INVALID", `${out}: result.json does not say the image's ${[!os && "os", !release && "release", !arch && "arch"].filter(Boolean).join(", ")} (an imported base, or a build older than Kiln 0.1's image field)`, {
      hint: "pass --os, --release and --arch, e.g. --os debian --release bookworm --arch amd64",
    });
  }
  const byFtype = (ftype: string) => result.artifacts.find((a) => a.ftype === ftype && !a.flavor);
  const squashfs = byFtype("squashfs");
  const manifest = byFtype("manifest");
  const flavors = new Map<string, ResultArtifact[]>();
  for (const a of result.artifacts) if (a.flavor) flavors.set(a.flavor, [...(flavors.get(a.flavor) ?? []), a]);
  if (o.flavors) {
    for (const f of o.flavors) if (!flavors.has(f)) throw new KilnError("INPUT_INVALID", `${out}: no flavor ${f}; this build has ${[...flavors.keys()].join(", ") || "none"}`);
    for (const f of [...flavors.keys()]) if (!o.flavors.includes(f)) flavors.delete(f);
  }
  const missing = [
    !squashfs && "squashfs",
    !manifest && "manifest",
    flavors.size === 0 && "a kernel flavor",
    ...[...flavors].flatMap(([f, as]) => ["boot-kernel", "boot-initrd"].filter((t) => !as.some((a) => a.ftype === t)).map((t) => `${f}/${t}`)),
  ].filter(Boolean);
  if (missing.length > 0 || !squashfs || !manifest) {
    throw new KilnError("INPUT_INVALID", `${out}: MAAS needs ${missing.join(", ")}, which this build did not make`, {
      hint: "the recipe's outputs must include squashfs, manifest, kernel and initrd, with at least one kernel",
    });
  }
  const shared = result.artifacts.filter((a) => !a.flavor && a !== squashfs && a !== manifest);
  return { dir, result, os, release, arch, squashfs, manifest, flavors, shared };
}

/** The first free version name of the day for this release/arch: in no products file and not on disk (an orphan in its grace period keeps its name). */
async function nextVersion(dir: StreamDir, products: ProductsFile, release: string, arch: string, now: Date): Promise<string> {
  const day = now.toISOString().slice(0, 10).replaceAll("-", "");
  const taken = new Set<string>();
  for (const p of Object.values(products.products)) if (p.release === release && p.arch === arch) for (const v of Object.keys(p.versions)) taken.add(v);
  for (let n = 0; ; n++) {
    const v = n === 0 ? day : `${day}.${n}`;
    if (taken.has(v)) continue;
    if ((await lstat(dir.abs(`${release}/${arch}/${v}`)).catch(() => undefined)) !== undefined) continue;
    return v;
  }
}

async function addBuild(dir: StreamDir, products: ProductsFile, state: StreamState, b: OutBuild, o: PublishOptions): Promise<PublishedVersion> {
  const version = await nextVersion(dir, products, b.release, b.arch, o.now);
  const base = `${b.release}/${b.arch}/${version}`;
  const subarch = o.subarch ?? "generic";
  const item = async (a: ResultArtifact, rel: string, ftype = a.ftype): Promise<StreamItem> => {
    await placeVerified(b, a, dir.abs(rel));
    return { ftype, path: rel, sha256: a.sha256, size: a.size, ...(a.kpackage ? { kpackage: a.kpackage } : {}) };
  };
  const sharedItems: Record<string, StreamItem> = {
    squashfs: await item(b.squashfs, `${base}/squashfs`),
    manifest: await item(b.manifest, `${base}/squashfs.manifest`, "manifest"),
  };
  for (const a of b.shared) sharedItems[a.ftype] = await item(a, `${base}/${path.basename(a.path)}`);

  const info = b.os === "debian" ? await debianRelease(b.release) : ({ version: b.release, codename: b.release, title: b.release } satisfies ReleaseInfo);
  const names: string[] = [];
  const kernels: BuildRecord["kernels"] = {};
  for (const [flavor, artifacts] of b.flavors) {
    const items: Record<string, StreamItem> = { ...sharedItems };
    for (const a of artifacts) items[a.ftype] = await item(a, `${base}/${subarch}/${flavor}/${path.basename(a.path)}`);
    const kernel = artifacts.find((a) => a.ftype === "boot-kernel")!;
    kernels[flavor] = { version: kernel.kernelVersion ?? "", kpackage: kernel.kpackage ?? "" };
    const name = imageProductName(o.naming, o.label, b.release, b.arch, subarch, flavor);
    const fields: Omit<StreamProduct, "versions"> = {
      arch: b.arch,
      kflavor: flavor,
      krel: b.release,
      label: o.label,
      os: b.os,
      release: b.release,
      release_codename: info.codename,
      release_title: info.title,
      subarch,
      subarches: subarch,
      version: info.version,
      ...(info.eol ? { support_eol: info.eol } : {}),
      ...(info.eolLts ? { support_esm_eol: info.eolLts } : {}),
    };
    const existing = products.products[name];
    products.products[name] = { ...fields, versions: { ...(existing?.versions ?? {}), [version]: { items } } };
    names.push(name);
  }
  state.builds[base] = {
    recipe: { ...b.result.recipe, ...(o.recipeFile ? { file: path.resolve(o.recipeFile) } : {}) },
    stages: Object.fromEntries(b.result.stages.map((s) => [s.name, s.key])),
    kernels,
    published: o.now.toISOString(),
  };
  return { out: b.dir, release: b.release, arch: b.arch, version, products: names };
}

/** Copies an artifact into the stream and checks it is still the file result.json describes. */
async function placeVerified(b: OutBuild, a: ResultArtifact, dest: string): Promise<void> {
  const src = path.join(b.dir, a.path);
  await mkdir(path.dirname(dest), { recursive: true });
  try {
    await copyFile(src, dest);
  } catch (e) {
    throw new KilnError("INPUT_INVALID", `${b.dir}: ${a.path}: cannot read it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  const d = await fileDigests(dest);
  if (d.sha256 !== a.sha256 || d.size !== a.size) {
    throw new KilnError("INPUT_INVALID", `${b.dir}: ${a.path} changed since the build (sha256 ${d.sha256.slice(0, 12)}…, result.json says ${a.sha256.slice(0, 12)}…); rebuild it`);
  }
}

export function describePublish(r: PublishReport): string[] {
  const lines: string[] = [];
  for (const p of r.published) lines.push(`published ${p.release}/${p.arch} ${p.version} from ${p.out}: ${p.products.join(", ")}`);
  for (const p of r.pruned) lines.push(`retention: dropped ${p.product} ${p.version}`);
  lines.push(...describeOrphans(r.orphans));
  return lines;
}

export function describeOrphans(o: OrphanReport): string[] {
  const lines: string[] = [];
  const waiting = Object.keys(o.waiting).length;
  if (waiting > 0) lines.push(`${waiting} unreferenced files kept for the grace period (first goes ${Object.values(o.waiting).sort()[0]})`);
  if (o.reaped.length > 0) lines.push(`deleted ${o.reaped.length} files unreferenced for longer than the grace period`);
  return lines;
}

