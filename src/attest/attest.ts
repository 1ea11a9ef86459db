/**
 * The attest step of a build, run once its artifacts are in out/: writes the SBOMs
 * (sbom.spdx.json, sbom.cdx.json), the provenance statement (provenance.json) and SHA256SUMS over
 * every artifact, signed as SHA256SUMS.gpg when a key is given (docs/attest.md). It returns the
 * artifacts it made, for result.json and the IMS manifest. What is covered is always the list of
 * artifacts the build hands in, so a new artifact kind is covered without changes here.
 */
import { randomUUID } from "node:crypto";
import { lstat, mkdir, readdir, readFile, rename, rm, utimes, writeFile } from "node:fs/promises";
import path from "node:path";
import { ARTIFACT_KINDS, type ArtifactKind } from "../artifacts/types.js";
import type { ResultArtifact, ResultStage } from "../artifacts/result.js";
import { canonicalJson, fileDigests, sha256Hex } from "../cache/key.js";
import type { EventSink } from "../engine/events.js";
import { openStageLog } from "../engine/stage-log.js";
import type { LogSink } from "../host/exec.js";
import { mountOverlay } from "../host/mount.js";
import { resolveInRoot } from "../host/root-path.js";
import { Scope } from "../host/scope.js";
import type { LoadedRecipe } from "../recipe/load.js";
import { openSigner } from "../streams/sign.js";
import { KILN_VERSION } from "../version.js";
import { DebDigestCache, readInRoot, readRootPackages, type DebPackage } from "./debian.js";
import { addedPackages, type ImageInventory } from "./inventory.js";
import { CLI_BUILDER_ID, customizeStatement, provenanceStatement, type SourceImage } from "./provenance.js";
import { cyclonedxSbom } from "./sbom-cyclonedx.js";
import { spdxSbom } from "./sbom-spdx.js";
import { formatSums, SUMS_FILE, SUMS_SIGNATURE } from "./sums.js";

export interface AttestOptions {
  out: string;
  /** What was built: a recipe (kiln build, create jobs), or for a customize job the image it changed. */
  made: { loaded: LoadedRecipe } | { source: SourceImage };
  stages: readonly ResultStage[];
  /** Every artifact already in out/ (relative paths, digests): what the SBOMs, provenance and sums cover. */
  artifacts: readonly ResultArtifact[];
  /** Layer trees, top first: the root's, and each flavor's (its kernel layer over the root). */
  layers: { root: string[]; flavors: Array<{ flavor: string; lower: string[] }> };
  /**
   * Flavors with no layer here, whose packages another record gives: a customize job's flavors
   * carried over from the source image, as the source's SBOM lists them.
   */
  carried?: Array<{ flavor: string; packages: DebPackage[] }>;
  /** Kiln's shared apt archive cache, where the .debs a build installed usually still are. */
  aptArchives: string;
  workDir: string;
  startedOn: Date;
  /** The build's SOURCE_DATE_EPOCH (docs/reproducible.md): the time the SBOMs state. */
  epoch?: number;
  /** A GnuPG key (file or key id) to sign SHA256SUMS with, as `kiln streams publish --sign-key`. */
  signKey?: string;
  passphraseFile?: string;
  /** SLSA builder id; `kiln build`'s when not given. */
  builderId?: string;
  /** A locked build's lock (--lock): the provenance names it as an input. */
  lock?: { file: string; sha256: string };
  /** Kiln's cache dir: SBOMs made before from the very same layers and artifacts are kept in `attest/` there. */
  cacheDir?: string;
  emit: EventSink;
}

/** SBOMs kept for unchanged rebuilds; the oldest beyond this many are removed. */
const KEPT_SBOMS = 32;

export async function attestOut(o: AttestOptions): Promise<ResultArtifact[]> {
  const t0 = Date.now();
  // SBOMs of the same layers and artifacts made before are the step's costly part: with them at
  // hand the step counts as cached (provenance and SHA256SUMS, rewritten each time, take ms).
  const kept = o.cacheDir ? path.join(o.cacheDir, "attest", `${sbomKey(o)}.json`) : undefined;
  let sboms = kept ? await readKept(kept) : undefined;
  const cached = sboms !== undefined;
  o.emit({ type: "stage-start", name: "attest", cached, summary: "SBOMs (SPDX, CycloneDX), provenance and SHA256SUMS of the artifacts", at: new Date().toISOString(), running: [] });
  const log = openStageLog(o.out, "attest", o.emit);
  try {
    const made: ResultArtifact[] = [];
    const put = async (kind: ArtifactKind, text: string) => {
      await writeFile(path.join(o.out, kind.name), text);
      const a: ResultArtifact = { name: kind.name, path: kind.name, type: kind.type, ftype: kind.ftype, ...(await fileDigests(path.join(o.out, kind.name))) };
      made.push(a);
      return a;
    };

    const since = (t: number) => `${((Date.now() - t) / 1000).toFixed(2)} s`;
    if (sboms) log.line(`SBOMs of the same layers and artifacts made before: ${kept!}`);
    else {
      const inv = await readInventory(o, log);
      log.line(`${inv.root.length} packages in the root${inv.flavors.map((f) => `, ${f.packages.length} added by ${f.flavor}`).join("")}; distro ${inv.distro ?? "unknown"}; read in ${since(t0)}`);
      const all = [...inv.root, ...inv.flavors.flatMap((f) => f.packages)];
      const noDeb = all.filter((p) => !p.debSha256);
      if (noDeb.length) log.line(`no .deb at hand for ${noDeb.length} packages (their checksums are not stated): ${noDeb.slice(0, 20).map((p) => p.name).join(" ")}${noDeb.length > 20 ? " …" : ""}`);
      log.line(`${all.filter((p) => p.license === "NOASSERTION").length} packages have no machine-readable copyright file (NOASSERTION)`);
      sboms = { spdx: JSON.stringify(spdxSbom(inv), null, 2) + "\n", cyclonedx: JSON.stringify(cyclonedxSbom(inv), null, 2) + "\n" };
      if (kept) await keep(kept, sboms);
    }
    await put(ARTIFACT_KINDS.sbomSpdx, sboms.spdx);
    await put(ARTIFACT_KINDS.sbomCycloneDx, sboms.cyclonedx);

    const facts = {
      subjects: [...o.artifacts, ...made],
      stages: o.stages,
      kilnVersion: KILN_VERSION,
      builderId: o.builderId ?? CLI_BUILDER_ID,
      ...(o.lock ? { lock: o.lock } : {}),
      startedOn: o.startedOn,
      finishedOn: new Date(),
    };
    const statement = "loaded" in o.made ? provenanceStatement({ ...facts, loaded: o.made.loaded }) : customizeStatement({ ...facts, source: o.made.source });
    await put(ARTIFACT_KINDS.provenance, JSON.stringify(statement, null, 2) + "\n");
    log.line(`SBOMs and provenance written after ${since(t0)}`);

    const sums = formatSums([...o.artifacts, ...made]);
    await put(ARTIFACT_KINDS.checksums, sums);
    if (o.signKey) {
      const signer = await openSigner(o.signKey, { passphraseFile: o.passphraseFile, log });
      try {
        await put(ARTIFACT_KINDS.checksumsSignature, await signer.detachSign(sums));
        log.line(`signed ${SUMS_FILE} with ${signer.fingerprint}: ${SUMS_SIGNATURE}`);
      } finally {
        await signer.close();
      }
    }
    const seconds = Math.round((Date.now() - t0) / 100) / 10;
    log.line(`attest: ${made.length} files in ${seconds} s`);
    o.emit({ type: "stage-end", name: "attest", key: "", cached, seconds, at: new Date().toISOString(), ranWith: [] });
    return made;
  } finally {
    await log.close();
  }
}

interface KeptSboms {
  spdx: string;
  cyclonedx: string;
}

/**
 * What the SBOMs are a function of: Kiln's version, the recipe, the layer entries (their trees'
 * paths name the generation, so a rebuilt layer is another path), the artifacts and the stated time.
 */
function sbomKey(o: AttestOptions): string {
  return sha256Hex(
    canonicalJson({
      kiln: KILN_VERSION,
      recipe: [madeName(o), madeDigest(o)],
      layers: o.layers,
      ...(o.carried?.length ? { carried: o.carried } : {}),
      artifacts: o.artifacts.map((a) => [a.name, a.path, a.type, a.sha256, a.md5, a.flavor ?? null]),
      epoch: o.epoch ?? process.env.SOURCE_DATE_EPOCH ?? null,
    }),
  );
}

async function readKept(file: string): Promise<KeptSboms | undefined> {
  try {
    const k = JSON.parse(await readFile(file, "utf8")) as KeptSboms;
    if (typeof k.spdx !== "string" || typeof k.cyclonedx !== "string") return undefined;
    await utimes(file, new Date(), new Date()); // most recently used: kept longest
    return k;
  } catch {
    return undefined;
  }
}

/** Keeps the SBOMs for the next unchanged rebuild (written whole, then renamed), and at most KEPT_SBOMS of them. */
async function keep(file: string, sboms: KeptSboms): Promise<void> {
  const dir = path.dirname(file);
  await mkdir(dir, { recursive: true });
  const tmp = `${file}.${randomUUID()}.tmp`; // builds in one process (the service's workers) may keep the same SBOMs at once
  await writeFile(tmp, JSON.stringify(sboms));
  await rename(tmp, file);
  const entries = await Promise.all(
    (await readdir(dir)).filter((n) => n.endsWith(".json")).map(async (n) => ({ n, t: (await lstat(path.join(dir, n)).catch(() => undefined))?.mtimeMs ?? 0 })),
  );
  for (const e of entries.sort((a, b) => b.t - a.t).slice(KEPT_SBOMS)) await rm(path.join(dir, e.n), { force: true });
}

/** The name the SBOMs give the image: the recipe's, or a customized image's own. */
function madeName(o: AttestOptions): string {
  return "loaded" in o.made ? o.made.loaded.recipe.name : o.made.source.name;
}

/** What the SBOMs' identities derive from: the recipe's digest, or the source image's rootfs digest for a customized image. */
function madeDigest(o: AttestOptions): string {
  return "loaded" in o.made ? o.made.loaded.sha256 : o.made.source.rootfs.sha256;
}

/** The packages of the root and of each flavor, read from read-only overlays of their layers. */
async function readInventory(o: AttestOptions, log: LogSink): Promise<ImageInventory> {
  await using scope = new Scope();
  const view = async (name: string, lower: string[]) =>
    scope.use(await mountOverlay(path.join(o.workDir, "mnt", `attest-${name.replace(/[^a-z0-9-]/gi, "-")}`), { lower }, { log, workDir: o.workDir })).path;
  const debDirs = [o.aptArchives];
  const digests = await DebDigestCache.open(path.join(path.dirname(o.aptArchives), "deb-sha256.json"));
  const root = await view("root", o.layers.root);
  const rootPackages = await readRootPackages(root, { debDirs, digests });
  const flavors: ImageInventory["flavors"] = [];
  for (const f of o.layers.flavors) {
    const all: DebPackage[] = await readRootPackages(await view(`flavor-${f.flavor}`, f.lower), { debDirs, digests });
    flavors.push({ flavor: f.flavor, packages: addedPackages(rootPackages, all) });
  }
  // A carried flavor added its packages to the source's root: against this root, what it still adds.
  for (const c of o.carried ?? []) flavors.push({ flavor: c.flavor, packages: addedPackages(rootPackages, c.packages) });
  await digests.save();
  return {
    name: madeName(o),
    recipeSha256: madeDigest(o),
    ...("source" in o.made ? { madeFrom: `by a customize job from image ${o.made.source.id} (rootfs sha256 ${o.made.source.rootfs.sha256})` } : {}),
    kilnVersion: KILN_VERSION,
    created: await sbomTime(root, o.epoch),
    ...(await distroOf(root)),
    root: rootPackages,
    flavors,
    artifacts: [...o.artifacts],
  };
}

/**
 * The time the SBOMs state: the build's SOURCE_DATE_EPOCH (reproducible builds; else the
 * environment's), else when dpkg's database last changed, which an unchanged rebuild keeps;
 * never the time of this run.
 */
async function sbomTime(root: string, buildEpoch: number | undefined): Promise<Date> {
  if (buildEpoch !== undefined) return new Date(buildEpoch * 1000);
  const epoch = process.env.SOURCE_DATE_EPOCH;
  if (epoch && /^\d+$/.test(epoch)) return new Date(Number(epoch) * 1000);
  const st = await lstat(await resolveInRoot(root, "/var/lib/dpkg/status")).catch(() => undefined);
  return new Date(Math.floor((st?.mtimeMs ?? 0) / 1000) * 1000);
}

/** purl's vendor and distro qualifier from the root's os-release: debian, "debian-12" (ID-VERSION_ID, else ID-VERSION_CODENAME). */
export async function distroOf(root: string): Promise<{ vendor?: string; distro?: string }> {
  const text = (await readInRoot(root, "/etc/os-release")) ?? (await readInRoot(root, "/usr/lib/os-release")) ?? "";
  const field = (k: string) => new RegExp(`^${k}="?([^"\\n]*)"?$`, "m").exec(text)?.[1];
  const id = field("ID");
  const v = field("VERSION_ID") ?? field("VERSION_CODENAME");
  return { ...(id && /^[a-z0-9._-]+$/.test(id) ? { vendor: id } : {}), ...(id && v ? { distro: `${id}-${v}` } : {}) };
}
