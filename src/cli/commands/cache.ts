/** `kiln cache ls` and `kiln cache prune [--max-size SIZE]`. */
import { CacheStore } from "../../cache/store.js";
import { KilnError } from "../../errors.js";
import { sweepDeadBuilds } from "../../host/sweep.js";
import { formatSize, parseSize } from "../../size.js";
import type { CommandIo } from "../io.js";

export async function cacheLsCommand(f: { cacheDir: string; json: boolean }, io: CommandIo): Promise<number> {
  await sweepDeadBuilds(f.cacheDir, { line: () => {} });
  const entries = (await new CacheStore(f.cacheDir).list()).sort((a, b) => b.lastUsed.getTime() - a.lastUsed.getTime());
  if (f.json) {
    io.stdout.write(JSON.stringify(entries.map((e) => ({ section: e.section, key: e.key, name: e.meta.name, size: e.meta.size, created: e.meta.created, lastUsed: e.lastUsed.toISOString() })), null, 2) + "\n");
    return 0;
  }
  let total = 0;
  for (const e of entries) {
    total += e.meta.size;
    io.stdout.write(`${e.key.slice(0, 16)}  ${e.section.padEnd(9)} ${e.meta.name.padEnd(20)} ${formatSize(e.meta.size).padStart(9)}  used ${e.lastUsed.toISOString().slice(0, 16).replace("T", " ")}\n`);
  }
  io.stdout.write(`${entries.length} entries, ${formatSize(total)} in ${f.cacheDir}\n`);
  return 0;
}

export async function cachePruneCommand(f: { cacheDir: string; maxSize: string; json: boolean }, io: CommandIo): Promise<number> {
  const max = parseSize(f.maxSize);
  if (max === undefined) throw new KilnError("USAGE", `--max-size ${f.maxSize}: not a size; use e.g. 500M, 20G or 0`);
  const log = { line: () => {} };
  await sweepDeadBuilds(f.cacheDir, log);
  const store = new CacheStore(f.cacheDir);
  // Running builds hold the lock shared: prune waits for them, so it never removes a layer one has mounted.
  const lock = await store.lock("exclusive", { signal: io.signal, onWait: () => io.stderr.write("waiting for running builds to finish (they use the cache)\n") });
  let removed;
  try {
    removed = await store.prune(max, log);
  } finally {
    await lock.release();
  }
  const freed = removed.reduce((n, e) => n + e.meta.size, 0);
  if (f.json) io.stdout.write(JSON.stringify({ removed: removed.map((e) => e.key), freed }) + "\n");
  else io.stdout.write(`removed ${removed.length} entries, freed ${formatSize(freed)}\n`);
  return 0;
}

