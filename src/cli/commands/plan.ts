/** `kiln plan RECIPE`: the stages a build would run, their keys and whether each is cached. No root needed. */
import { CacheStore } from "../../cache/store.js";
import { cachedStages, prepareBuild } from "../../engine/build.js";
import type { CommandIo } from "../io.js";

export async function planCommand(recipe: string, f: { cacheDir: string; json: boolean }, io: CommandIo): Promise<number> {
  const { plan } = await prepareBuild(recipe);
  const store = new CacheStore(f.cacheDir);
  const all = [...plan.root, ...plan.kernels, ...plan.artifacts];
  // Cached means reusable: the entry exists and was built on the entries below it as they are now.
  const cached = await cachedStages(store, all);
  const rows = all.map((s) => ({ name: s.name, kind: s.kind, key: s.key, cached: cached.has(s.key), record: s.record }));
  if (f.json) {
    io.stdout.write(JSON.stringify({ recipe: plan.recipe, unchangedImport: plan.unchangedImport, stages: rows }, null, 2) + "\n");
  } else {
    io.stdout.write(`plan for ${plan.recipe.name} (${plan.recipe.file})\n`);
    for (const r of rows) io.stdout.write(`  ${r.cached ? "●" : "○"} ${r.name.padEnd(22)} ${r.key.slice(0, 16)}  ${r.cached ? "cached" : "to build"}\n`);
  }
  return 0;
}
