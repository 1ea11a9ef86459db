/**
 * The `create` job: recipe → build → upload → manifest.json → image record, moving through IMS'
 * statuses (docs/architecture.md#ims-behaviour-kiln-follows): fetching_recipe, waiting_for_repos, building_image,
 * packaging_artifacts, then success (set by the worker) or error.
 *
 * Kiln recipes build with the engine. kiwi-ng and packer recipes are valid records, but Kiln has
 * no backend for them: the job ends `error` saying so.
 */
import { mkdir } from "node:fs/promises";
import path from "node:path";
import { SERVICE_BUILDER_ID } from "../attest/provenance.js";
import { build } from "../engine/build.js";
import { loadRecipe } from "../recipe/load.js";
import { IMS_BUCKET, parseS3Path } from "../catalog/objects.js";
import { DEBIAN_RELEASES, type RecipeRecord } from "../catalog/records.js";
import { downloadObject } from "./download.js";
import { jobError } from "./job-error.js";
import { runJobSession } from "./job-session.js";
import { publishImage } from "./publish.js";
import { renderRecipeFile } from "./recipe-template.js";
import { RECIPE_FILE, unpackRecipeArchive } from "./recipe-archive.js";
import type { JobContext } from "./runner.js";

export async function runCreateJob(ctx: JobContext): Promise<void> {
  const { job, catalog, store, log } = ctx;

  await ctx.setStatus("fetching_recipe");
  const recipe = await catalog.get("recipes", job.artifact_id);
  if (!recipe) throw jobError(`recipe ${job.artifact_id} no longer exists (deleted after the job was created)`);
  log.line(`recipe ${recipe.id} "${recipe.name}": type ${recipe.recipe_type}, ${recipe.linux_distribution}, ${recipe.arch}`);
  if (recipe.recipe_type !== "kiln") {
    throw jobError(
      `recipe ${recipe.id} is a ${recipe.recipe_type} recipe; this Kiln builds only recipe_type "kiln" (a tarball with ${RECIPE_FILE} at its root). ` +
        `Building ${recipe.recipe_type} descriptions needs a ${recipe.recipe_type} backend, which Kiln does not have.`,
    );
  }
  const recipeDir = await fetchRecipe(ctx, recipe);
  await renderRecipeFile(path.join(recipeDir, RECIPE_FILE), recipe, log);

  await ctx.setStatus("waiting_for_repos");
  // IMS waits here for the kiwi repositories to answer. Kiln's repositories are the recipe's apt
  // sources, which the bootstrap stage reaches directly; what can be checked now is the recipe.
  const loaded = await loadRecipe(path.join(recipeDir, RECIPE_FILE));
  const mismatch = distributionMismatch(recipe, loaded.recipe.base);
  if (mismatch) throw jobError(mismatch);
  log.line(`recipe.yaml: ${loaded.recipe.name}, ${loaded.recipe.kernels.length} kernel flavor(s), outputs ${loaded.recipe.outputs.join(", ")}`);

  await ctx.setStatus("building_image");
  const outDir = path.join(ctx.workDir, "out");
  const verify = ctx.verify === "recipe" ? undefined : ctx.verify === "always";
  const result = await build({
    recipeFile: loaded.file,
    outDir,
    cacheDir: ctx.cacheDir,
    signal: ctx.signal,
    emit: (e) => log.event(e),
    verify,
    siteCas: ctx.siteCas,
    signKey: ctx.signKey,
    builderId: SERVICE_BUILDER_ID,
    onStageFailure: job.enable_debug ? (f) => debugShell(ctx, f) : undefined,
  });
  const stages = result.stages.map((s) => ({ name: s.name, key: s.key, cached: s.cached, seconds: s.seconds }));
  await ctx.setKiln({ stages, cache_hits: stages.filter((s) => s.cached).length });
  const failed = result.verify.filter((v) => !v.ok);
  if (failed.length > 0) throw jobError(`boot verification failed: ${failed.map((v) => `${v.flavor}: ${v.reason ?? "did not reach userspace"}`).join("; ")}`);
  if (!result.artifacts.some((a) => a.name === "squashfs")) throw jobError(`the recipe's outputs (${loaded.recipe.outputs.join(", ")}) have no squashfs; an IMS image needs a rootfs`);

  await ctx.setStatus("packaging_artifacts");
  const flavors = result.artifacts
    .filter((a) => a.name === "boot-kernel" && a.flavor)
    .map((a) => ({ flavor: a.flavor!, kpackage: a.kpackage ?? "", kernel_version: a.kernelVersion ?? "" }));
  const kiln = { job_id: job.id, source_image_id: null, flavors, package_diff: null, label: "candidate", recipe: { name: result.recipe.name, sha256: result.recipe.sha256 } };
  const image = await publishImage(catalog, store, { outDir, name: job.image_root_archive_name, arch: job.arch, jobId: job.id, kiln }, log);
  await ctx.setResult(image.id);
}

/**
 * enable_debug: a failed layer stage keeps its root mounted and opens the `debug` SSH container
 * on it, not jailed (the root at /mnt/image), as IMS does. `complete` runs the failed stage again
 * on the root as the operator left it and the build goes on; `failed` ends the job. (IMS' debug
 * shell never makes an image; continuing is Kiln's, so a fix found in the shell is not wasted.)
 */
async function debugShell(ctx: JobContext, f: { stage: string; root: string; workDir: string; error: unknown }): Promise<"retry" | "fail"> {
  ctx.log.line(`stage ${f.stage} failed: ${(f.error as Error).message ?? String(f.error)}`);
  ctx.log.line(`enable_debug: a debug shell is open on the build root of ${f.stage}; complete runs the stage again on it, failed ends the job`);
  await ctx.setKiln({ debug_stage: f.stage });
  const marker = await runJobSession(ctx, { mode: "plain", image: f.root }, f.workDir);
  await ctx.setKiln({ debug_stage: null });
  if (marker === "failed") return "fail";
  await ctx.setStatus("building_image");
  return "retry";
}

/** Downloads the recipe archive (checking the record's etag and the store's md5 when they are given) and unpacks it safely. */
async function fetchRecipe(ctx: JobContext, recipe: RecipeRecord): Promise<string> {
  if (!recipe.link) throw jobError(`recipe ${recipe.id} has no link: upload its archive first (kiln ims recipes upload, or PUT /v3/recipes/${recipe.id}/archive)`);
  await mkdir(ctx.workDir, { recursive: true });
  const archive = path.join(ctx.workDir, "recipe.tar.gz");
  const got = await downloadObject(ctx.store, recipe.link.path, archive, {
    what: `recipe ${recipe.id}: its archive`,
    signal: ctx.signal,
    expectEtag: recipe.link.etag,
    maxSize: ctx.maxRecipeSize,
    maxSizeHint: "--max-recipe-size",
  });
  const bucket = parseS3Path(recipe.link.path)?.bucket;
  ctx.log.line(`fetched ${recipe.link.path} (${got.size} bytes, md5 ${got.md5})${bucket !== IMS_BUCKET ? ` (bucket ${bucket})` : ""}`);
  const dir = path.join(ctx.workDir, "recipe");
  const unpacked = await unpackRecipeArchive(archive, dir, path.join(ctx.workDir, "scratch"), { maxUnpacked: ctx.maxRecipeSize * 4 });
  if (!unpacked.hasRecipeFile) throw jobError(`recipe ${recipe.id}: the archive has no ${RECIPE_FILE} at its root`);
  ctx.log.line(`unpacked ${unpacked.members} members, ${unpacked.bytes} bytes`);
  return dir;
}

/** Why the record's linux_distribution contradicts what recipe.yaml bootstraps, if it does. */
export function distributionMismatch(recipe: RecipeRecord, base: { debian?: string } | { image: string }): string | undefined {
  if (!("debian" in base) || !base.debian) return undefined;
  const codename = base.debian.split("-")[0]!;
  const means = DEBIAN_RELEASES[codename];
  if (means && means !== recipe.linux_distribution) {
    return `recipe ${recipe.id} says linux_distribution ${recipe.linux_distribution}, but its recipe.yaml bootstraps Debian ${base.debian} (${means}); fix the record or the recipe`;
  }
  if (!means && !recipe.linux_distribution.startsWith("debian")) {
    return `recipe ${recipe.id} says linux_distribution ${recipe.linux_distribution}, but its recipe.yaml bootstraps Debian ${base.debian}`;
  }
  return undefined;
}
