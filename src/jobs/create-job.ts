/**
 * The `create` job: recipe → build → upload → manifest.json → image record, moving through IMS'
 * statuses (ims-notes §1.4): fetching_recipe, waiting_for_repos, building_image,
 * packaging_artifacts, then success (set by the worker) or error.
 *
 * Kiln recipes build with the engine. kiwi-ng and packer recipes are valid records, but Kiln has
 * no backend for them: the job ends `error` saying so.
 */
import { createWriteStream } from "node:fs";
import { mkdir } from "node:fs/promises";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import { createHash } from "node:crypto";
import { Transform } from "node:stream";
import { build } from "../engine/build.js";
import { loadRecipe } from "../recipe/load.js";
import { IMS_BUCKET, parseS3Path } from "../catalog/objects.js";
import { DEBIAN_RELEASES, type RecipeRecord } from "../catalog/records.js";
import { KilnError } from "../errors.js";
import { ObjectNotFound } from "../store/object-store.js";
import { publishImage } from "./publish.js";
import { RECIPE_FILE, unpackRecipeArchive } from "./recipe-archive.js";
import type { JobContext } from "./runner.js";

/** An error that ends a job, in the words the job record's kiln.error shows. */
export function jobError(message: string): KilnError {
  return new KilnError("JOB_FAILED", message);
}

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
  const result = await build({ recipeFile: loaded.file, outDir, cacheDir: ctx.cacheDir, signal: ctx.signal, emit: (e) => log.event(e), verify });
  const stages = result.stages.map((s) => ({ name: s.name, key: s.key, cached: s.cached, seconds: s.seconds }));
  await ctx.setKiln({ stages, cache_hits: stages.filter((s) => s.cached).length });
  const failed = result.verify.filter((v) => !v.ok);
  if (failed.length > 0) throw jobError(`boot verification failed: ${failed.map((v) => `${v.flavor}: ${v.reason ?? "did not reach userspace"}`).join("; ")}`);
  if (!result.artifacts.some((a) => a.name === "squashfs")) throw jobError(`the recipe's outputs (${loaded.recipe.outputs.join(", ")}) have no squashfs; an IMS image needs a rootfs`);

  await ctx.setStatus("packaging_artifacts");
  const image = await publishImage(catalog, store, { outDir, name: job.image_root_archive_name, arch: job.arch, jobId: job.id }, log);
  await ctx.setResult(image.id);
}

/** Downloads the recipe archive (checking its md5 when the store has one) and unpacks it safely. */
async function fetchRecipe(ctx: JobContext, recipe: RecipeRecord): Promise<string> {
  if (!recipe.link) throw jobError(`recipe ${recipe.id} has no link: upload its archive first (kiln ims recipes upload, or PUT /v3/recipes/${recipe.id}/archive)`);
  const where = parseS3Path(recipe.link.path);
  if (!where) throw jobError(`recipe ${recipe.id} link ${recipe.link.path} is not an s3://bucket/key path`);
  await mkdir(ctx.workDir, { recursive: true });
  const archive = path.join(ctx.workDir, "recipe.tar.gz");
  let info;
  try {
    info = await ctx.store.head(where.bucket, where.key);
  } catch (e) {
    if (e instanceof ObjectNotFound) throw jobError(`recipe ${recipe.id}: its archive ${recipe.link.path} is not in the store`);
    throw e;
  }
  if (info.size > ctx.maxRecipeSize) throw jobError(`recipe ${recipe.id}: its archive is ${info.size} bytes; this service accepts at most ${ctx.maxRecipeSize} (--max-recipe-size)`);
  const md5 = createHash("md5");
  const hash = new Transform({
    transform(chunk: Buffer, _e, done) {
      md5.update(chunk);
      done(null, chunk);
    },
  });
  await pipeline(await ctx.store.get(where.bucket, where.key), hash, createWriteStream(archive), { signal: ctx.signal });
  const got = md5.digest("hex");
  const want = info.metadata.md5sum;
  if (want && want !== got) throw jobError(`recipe ${recipe.id}: downloaded archive has md5 ${got}, the store's md5sum says ${want}`);
  ctx.log.line(`fetched ${recipe.link.path} (${info.size} bytes, md5 ${got})${where.bucket !== IMS_BUCKET ? ` (bucket ${where.bucket})` : ""}`);
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
