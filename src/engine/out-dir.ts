/**
 * The out dir: what a build leaves for its user. Kiln only ever deletes files it wrote itself
 * (listed in the previous result.json), so pointing --out at the wrong folder loses nothing.
 *
 * One assembly for `kiln build` and the customize job: a stage's exported files go where its
 * declared `outputs` say (top level, or under <flavor>/), each described by its entry in the
 * media-type table (artifacts/types.ts); then manifest.json and result.json.
 */
import { copyFile, mkdir, readdir, readFile, rm, rmdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { z } from "zod";
import { KilnError } from "../errors.js";
import { imsManifest, type BuildResult, type ResultArtifact } from "../artifacts/result.js";
import { ARTIFACT_KINDS } from "../artifacts/types.js";
import { fileDigests } from "../cache/key.js";
import type { Stage } from "../stages/stage.js";

const OWN_FILES = ["result.json", "manifest.json"];

export async function prepareOutDir(out: string): Promise<void> {
  let entries: string[];
  try {
    entries = await readdir(out);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") {
      await mkdir(path.join(out, "logs"), { recursive: true });
      return;
    }
    if ((e as NodeJS.ErrnoException).code === "ENOTDIR") {
      throw new KilnError("INPUT_INVALID", `--out ${out}: is a file, not a directory; name a new or empty directory`);
    }
    throw e;
  }
  if (entries.length > 0) {
    let previous: BuildResult;
    try {
      previous = JSON.parse(await readFile(path.join(out, "result.json"), "utf8")) as BuildResult;
    } catch {
      // logs/ alone is what a failed build leaves: ours too.
      if (entries.every((e) => e === "logs")) previous = { artifacts: [] } as unknown as BuildResult;
      else {
        throw new KilnError("INPUT_INVALID", `--out ${out}: not empty and has no result.json, so it is not a Kiln out dir; name a new or empty directory`);
      }
    }
    for (const a of previous.artifacts ?? []) {
      if (typeof a.path === "string" && !a.path.includes("..") && !path.isAbsolute(a.path)) {
        await rm(path.join(out, a.path), { force: true });
        const dir = path.dirname(a.path);
        if (dir !== ".") await rmdir(path.join(out, dir)).catch(() => {}); // only if empty
      }
    }
    for (const f of OWN_FILES) await rm(path.join(out, f), { force: true });
    await rm(path.join(out, "logs"), { recursive: true, force: true });
  }
  await mkdir(path.join(out, "logs"), { recursive: true });
}

export async function placeFile(src: string, out: string, rel: string): Promise<void> {
  await mkdir(path.dirname(path.join(out, rel)), { recursive: true });
  // A copy, not a hard link: editing a file in out/ must not change the cache.
  await copyFile(src, path.join(out, rel));
}

export async function writeJson(file: string, value: unknown, indent = 2): Promise<void> {
  await writeFile(file, JSON.stringify(value, null, indent) + "\n");
}

/** What result.json says of a per-flavor artifact's kernel. */
export interface FlavorFacts {
  flavor: string;
  kpackage?: string;
  kernelVersion?: string;
}

/** Digests of a stage's exported files, by name, as the engine records them with its cache entry. */
export const OutputDigests = z.record(z.string(), z.object({ sha256: z.string(), md5: z.string(), size: z.number() }));
export type OutputDigests = z.output<typeof OutputDigests>;

/** The result.json entry of a file in out/ (`digests` when the cache already has them, else read from the file). */
export async function outArtifact(out: string, rel: string, kind: keyof typeof ARTIFACT_KINDS, flavor?: FlavorFacts, digests?: OutputDigests[string]): Promise<ResultArtifact> {
  const k = ARTIFACT_KINDS[kind];
  return { name: k.name, path: rel, type: k.type, ftype: k.ftype, ...flavor, ...(digests ?? (await fileDigests(path.join(out, rel)))) };
}

/**
 * Puts a stage's exported files (in `from`) into out/ as its `outputs` declare: only those the
 * recipe asks for (`wants`; all when absent), under <flavor>/ for a flavor's stage. Returns their
 * result.json entries.
 */
export async function placeStageOutputs(
  stage: Stage,
  from: string,
  out: string,
  opts: { wants?: ReadonlySet<string>; flavor?: FlavorFacts; digests?: OutputDigests } = {},
): Promise<ResultArtifact[]> {
  const placed: ResultArtifact[] = [];
  for (const o of stage.outputs ?? []) {
    if (opts.wants && !opts.wants.has(o.output)) continue;
    const rel = opts.flavor ? `${opts.flavor.flavor}/${o.file}` : o.file;
    if (path.resolve(from, o.file) !== path.resolve(out, rel)) await placeFile(path.join(from, o.file), out, rel);
    placed.push(await outArtifact(out, rel, o.artifact, opts.flavor, opts.digests?.[o.file]));
  }
  return placed;
}

/** A flavor's boot-params file (the kernel command line for a diskless boot). */
export async function writeBootParams(out: string, flavor: FlavorFacts, content: string | Uint8Array): Promise<ResultArtifact> {
  const rel = `${flavor.flavor}/boot-params`;
  await mkdir(path.join(out, flavor.flavor), { recursive: true });
  await writeFile(path.join(out, rel), content);
  return outArtifact(out, rel, "bootParams", flavor);
}

/** manifest.json (IMS, of `result.artifacts`) and result.json: written last, once the artifacts are in place. */
export async function writeOutDocuments(out: string, result: BuildResult, created: Date): Promise<void> {
  await writeJson(path.join(out, "manifest.json"), imsManifest(result.artifacts, created), 4);
  await writeJson(path.join(out, "result.json"), result);
}
