/**
 * The build environment of plain sessions (host/plain-shell.ts): assets/build-env/recipe.yaml,
 * built by the engine like any recipe, root layers only, so its layers are cached, shared by every
 * session on the machine and rebuilt when the recipe or the tools in its keys change.
 */
import { fileURLToPath } from "node:url";
import { CacheStore } from "../cache/store.js";
import { build } from "./build.js";
import type { EventSink } from "./events.js";

export const BUILD_ENV_RECIPE = fileURLToPath(new URL("../../../assets/build-env/recipe.yaml", import.meta.url));

/** Builds (or finds in the cache) the build environment; returns its layer trees, top first. */
export async function buildEnvironment(opts: { cacheDir: string; outDir: string; signal: AbortSignal; emit: EventSink }): Promise<string[]> {
  const result = await build({ recipeFile: BUILD_ENV_RECIPE, outDir: opts.outDir, cacheDir: opts.cacheDir, signal: opts.signal, emit: opts.emit, verify: false, rootOnly: true });
  const store = new CacheStore(opts.cacheDir);
  return result.stages.map((s) => store.tree(s.key)).reverse();
}
