/**
 * `kiln rebuild OUT` (docs/lock.md#kiln-rebuild): builds OUT's recipe again from OUT's kiln.lock
 * in a scratch cache (a temp dir, removed afterwards; only the apt archive cache is shared, so
 * packages come from Kiln's package cache when it has them), then compares every artifact OUT's
 * result.json lists with the rebuilt one: identical (same sha256) or different, with diffoscope's
 * summary when diffoscope is installed.
 *
 * The recipe is found where result.json says it was built (`recipe.file`) and must still be what
 * was built: its sha256 is result.json's, and every file it references has the digest the
 * provenance names. Otherwise the rebuild would prove nothing, and it stops with exit 2.
 */
import { copyFile, lstat, mkdir, mkdtemp, readFile, symlink } from "node:fs/promises";
import path from "node:path";
import { readOutResult, type BuildResult, type ResultArtifact } from "../artifacts/result.js";
import { ARTIFACT_KINDS } from "../artifacts/types.js";
import type { ProvenanceStatement } from "../attest/provenance.js";
import { safeRelPath } from "../attest/sums.js";
import { fileDigest } from "../cache/key.js";
import { KilnError } from "../errors.js";
import { exec, nullLog } from "../host/exec.js";
import { LOCK_FILE } from "../lock/lock.js";
import { removeTree } from "../host/workdir.js";
import { loadRecipe } from "../recipe/load.js";

export type ArtifactVerdict = "identical" | "different" | "missing" | "added";

export interface ArtifactComparison {
  path: string;
  verdict: ArtifactVerdict;
  /** sha256 in OUT and in the rebuild (absent on the side that has no such artifact). */
  original?: string;
  rebuilt?: string;
  /** diffoscope's report, its first lines, for a different artifact; or why there is none. */
  diffoscope?: string;
}

export interface RebuildReport {
  out: string;
  /** Where the rebuilt out dir is (kept only with --keep). */
  rebuilt: string;
  identical: boolean;
  /** Is diffoscope installed (its summaries are in `artifacts`)? */
  diffoscope: boolean;
  artifacts: ArtifactComparison[];
}

/** Not compared: a signature is made by a key the rebuild does not have (SHA256SUMS itself is). */
const NOT_REBUILT = new Set<string>([ARTIFACT_KINDS.checksumsSignature.name]);
/** Lines of diffoscope's text report kept per artifact. */
const DIFFOSCOPE_LINES = 40;

/**
 * The recipe OUT was built from, checked to be unchanged: its path from result.json, its sha256,
 * and the digests of the files it references as the provenance names them. Every mismatch is named.
 */
export async function recipeOf(out: string, result: BuildResult): Promise<string> {
  const file = result.recipe.file;
  if (!file) {
    throw new KilnError("INPUT_INVALID", `${out}/result.json: recipe.file: not recorded (a build of a Kiln before kiln.lock)`, { hint: "build it again with this Kiln, then rebuild that out dir" });
  }
  const loaded = await loadRecipe(file).catch((e: unknown) => {
    throw new KilnError("INPUT_INVALID", `${out}/result.json: recipe.file ${file}: ${(e as Error).message}`, { hint: "the recipe must still be where it was built from" });
  });
  const problems: string[] = [];
  if (loaded.sha256 !== result.recipe.sha256) problems.push(`${file} has sha256 ${loaded.sha256}, but OUT was built from ${result.recipe.sha256}`);
  const prov = await readFile(path.join(out, ARTIFACT_KINDS.provenance.name), "utf8").then((t) => JSON.parse(t) as ProvenanceStatement).catch(() => undefined);
  for (const d of prov?.predicate?.buildDefinition?.resolvedDependencies ?? []) {
    if (d.name === "recipe" || d.name === "lock" || !d.uri?.startsWith("file:")) continue;
    const abs = path.resolve(loaded.dir, d.uri.slice("file:".length));
    const now = loaded.inputs[abs]?.replace(/^sha256:/, "");
    if (now !== d.digest.sha256) problems.push(`${d.name} (${abs}) has sha256 ${now ?? "(not referenced now)"}, the build had ${d.digest.sha256}`);
  }
  if (problems.length) throw new KilnError("INPUT_INVALID", `kiln rebuild ${out}: the recipe changed since the build: ${problems.join("; ")}`, { hint: "check out the recipe as it was (its digests are in provenance.json)" });
  return file;
}

/** Compares the artifacts of two out dirs by sha256 (and diffoscope for those that differ). */
export async function compareOutDirs(a: string, b: string, o: { diffoscope: boolean; signal?: AbortSignal }): Promise<ArtifactComparison[]> {
  const ra = await readOutResult(a);
  const rb = await readOutResult(b);
  const listed = (r: BuildResult) => new Map<string, ResultArtifact>(r.artifacts.filter((x) => safeRelPath(x.path) && !NOT_REBUILT.has(x.path)).map((x) => [x.path, x]));
  const left = listed(ra);
  const right = listed(rb);
  const out: ArtifactComparison[] = [];
  for (const p of [...new Set([...left.keys(), ...right.keys()])].sort()) {
    const x = left.get(p);
    const y = right.get(p);
    // The files themselves, not result.json's word for them.
    const ha = x && (await fileDigest(path.join(a, p)).catch(() => undefined));
    const hb = y && (await fileDigest(path.join(b, p)).catch(() => undefined));
    if (!ha || !hb) {
      out.push({ path: p, verdict: ha ? "missing" : "added", ...(ha ? { original: ha } : {}), ...(hb ? { rebuilt: hb } : {}) });
      continue;
    }
    if (ha === hb) out.push({ path: p, verdict: "identical", original: ha, rebuilt: hb });
    else {
      const summary = o.diffoscope ? await diffoscopeSummary(path.join(a, p), path.join(b, p), o.signal) : "diffoscope is not installed (apt-get install diffoscope): no report";
      out.push({ path: p, verdict: "different", original: ha, rebuilt: hb, diffoscope: summary });
    }
  }
  return out;
}

export async function hasDiffoscope(): Promise<boolean> {
  const r = await exec(["sh", "-c", "command -v diffoscope"], { okCodes: [0, 1, 127], captureStdout: true, quietStdout: true, log: nullLog }).catch(() => undefined);
  return r?.code === 0;
}

async function diffoscopeSummary(a: string, b: string, signal?: AbortSignal): Promise<string> {
  const r = await exec(["diffoscope", "--no-progress", "--text", "-", "--max-report-size", "200000", a, b], {
    okCodes: [0, 1, 2],
    captureStdout: true,
    quietStdout: true,
    log: nullLog,
    ...(signal ? { signal } : {}),
  }).catch((e: Error) => ({ code: 2, stdout: `diffoscope failed: ${e.message}` }));
  const lines = r.stdout.split("\n");
  return lines.slice(0, DIFFOSCOPE_LINES).join("\n") + (lines.length > DIFFOSCOPE_LINES ? `\n… (${lines.length - DIFFOSCOPE_LINES} more lines)` : "");
}

export interface RebuildOptions {
  out: string;
  /** Kiln's cache dir: only its apt archive cache (`apt/`) is used, shared with the scratch cache. */
  cacheDir: string;
  /** Keep the rebuilt out dir here instead of removing it. */
  keep?: string;
  build: (o: { recipeFile: string; lockFile: string; outDir: string; cacheDir: string }) => Promise<unknown>;
  signal?: AbortSignal;
}

export async function rebuild(o: RebuildOptions): Promise<RebuildReport> {
  const out = path.resolve(o.out);
  const result = await readOutResult(out);
  const recipe = await recipeOf(out, result);
  const lock = path.join(out, LOCK_FILE);
  if (!(await lstat(lock).catch(() => undefined))?.isFile()) {
    throw new KilnError("INPUT_INVALID", `${out}: no ${LOCK_FILE} (a build of a Kiln before kiln.lock)`, { hint: "build it again with this Kiln, then rebuild that out dir" });
  }
  const sharedApt = path.join(path.resolve(o.cacheDir), "apt");
  await mkdir(sharedApt, { recursive: true });
  // /var/tmp, not /tmp: layers are large, and /tmp is often a small tmpfs.
  const scratch = await mkdtemp(path.join(process.env.KILN_REBUILD_TMP ?? "/var/tmp", "kiln-rebuild-"));
  try {
    const cache = path.join(scratch, "cache");
    await mkdir(cache);
    await symlink(sharedApt, path.join(cache, "apt"));
    // The lock as it is now: the build reads it more than once.
    const lockCopy = path.join(scratch, LOCK_FILE);
    await copyFile(lock, lockCopy);
    const rebuilt = o.keep ? path.resolve(o.keep) : path.join(scratch, "out");
    await o.build({ recipeFile: recipe, lockFile: lockCopy, outDir: rebuilt, cacheDir: cache });
    const diffoscope = await hasDiffoscope();
    const artifacts = await compareOutDirs(out, rebuilt, { diffoscope, ...(o.signal ? { signal: o.signal } : {}) });
    return { out, rebuilt, identical: artifacts.every((a) => a.verdict === "identical"), diffoscope, artifacts };
  } finally {
    await removeTree(scratch, nullLog);
  }
}

/** The report as text lines: one per artifact, then diffoscope's summaries indented. */
export function formatRebuild(r: RebuildReport): string[] {
  const lines: string[] = [];
  for (const a of r.artifacts) {
    lines.push(`${a.verdict.padEnd(9)} ${a.path}`);
    if (a.diffoscope) lines.push(...a.diffoscope.split("\n").map((l) => `    ${l}`));
  }
  const differing = r.artifacts.filter((a) => a.verdict !== "identical");
  lines.push(
    r.identical
      ? `${r.out}: all ${r.artifacts.length} artifacts rebuilt bit for bit`
      : `${r.out}: ${differing.length} of ${r.artifacts.length} artifacts differ: ${differing.map((a) => a.path).join(", ")}${r.diffoscope ? "" : " (diffoscope is not installed: no reports)"}`,
  );
  return lines;
}
