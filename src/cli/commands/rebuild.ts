/**
 * `kiln rebuild OUT`: build OUT's recipe again from its kiln.lock in a scratch cache and say, per
 * artifact, whether the rebuild is bit-identical (src/rebuild/rebuild.ts). Exit 0 only when every
 * artifact is, 1 when one differs, 2 for bad input.
 */
import { build } from "../../engine/build.js";
import { formatRebuild, rebuild } from "../../rebuild/rebuild.js";
import type { CommandIo } from "../io.js";
import { createRenderer } from "../render.js";

export async function rebuildCommand(out: string, o: { cacheDir: string; keep?: string; json: boolean; verbose: boolean }, io: CommandIo): Promise<number> {
  // The build's progress goes to stderr, so stdout is the report alone (JSON with --json).
  const r = createRenderer({ json: o.json, verbose: o.verbose, stream: io.stderr });
  try {
    const report = await rebuild({
      out,
      cacheDir: o.cacheDir,
      ...(o.keep !== undefined ? { keep: o.keep } : {}),
      signal: io.signal,
      build: (b) => build({ ...b, noCache: true, verify: false, signal: io.signal, emit: r.emit }),
    });
    io.stdout.write(o.json ? JSON.stringify(report, null, 2) + "\n" : formatRebuild(report).join("\n") + "\n");
    return report.identical ? 0 : 1;
  } finally {
    r.stop();
  }
}
