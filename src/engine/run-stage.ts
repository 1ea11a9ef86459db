/**
 * Runs one stage on a root the caller prepared, outside a plan: what a customize job does after
 * the operator's session (seal the root, rebuild a flavor's initramfs, pack the squashfs, list
 * the packages) with the very stage code a build runs. Nothing here is cached: a customized root
 * is not the product of any recipe key.
 */
import { mkdir } from "node:fs/promises";
import { openChroot, type ChrootSession } from "../host/chroot.js";
import { exec, type LogSink } from "../host/exec.js";
import { readHostSources } from "../host/apt-sources.js";
import { Scope } from "../host/scope.js";
import type { z } from "zod";
import { checkedOptions, type ArtifactStage, type LayerStage, type StageContext } from "../stages/stage.js";

export interface StageRunOptions {
  name: string;
  log: LogSink;
  signal: AbortSignal;
  /** A work dir of host/workdir.ts: processes started here carry it, so the crash sweep finds them. */
  workDir: string;
  /** Where the stage writes the files it exports. */
  outputs: string;
  aptArchives: string;
  env?: Record<string, string>;
}

function context(o: StageRunOptions): StageContext {
  return {
    name: o.name,
    log: o.log,
    signal: o.signal,
    workDir: o.workDir,
    outputs: o.outputs,
    env: o.env ?? {},
    facts: {},
    exec: (argv, opts = {}) => exec(argv, { ...opts, log: o.log, signal: o.signal, workDir: o.workDir }),
    progress: () => {},
  };
}

/** Runs a layer stage on `root` (already writable: an overlay whose upper is `upper`), options checked first. Returns the stage's facts. */
export async function runLayerStage<S extends z.ZodType>(stage: LayerStage<S>, options: z.input<S>, root: string, upper: string, o: StageRunOptions): Promise<Record<string, unknown>> {
  const checked = checkedOptions(stage, options);
  await mkdir(o.outputs, { recursive: true });
  await mkdir(o.aptArchives, { recursive: true });
  const ctx = context(o);
  await using scope = new Scope();
  let session: ChrootSession | undefined;
  await stage.run(
    {
      ...ctx,
      root,
      upper,
      aptArchives: o.aptArchives,
      hostSources: await readHostSources(),
      chroot: async () => (session ??= scope.use(await openChroot(root, { log: o.log, signal: o.signal, workDir: o.workDir, aptArchives: o.aptArchives, env: ctx.env }))),
    },
    checked,
  );
  return ctx.facts;
}

/** Runs an artifact stage against a read-only `root`, options checked first. Returns the stage's facts. */
export async function runArtifactStage<S extends z.ZodType>(stage: ArtifactStage<S>, options: z.input<S>, root: string, o: StageRunOptions): Promise<Record<string, unknown>> {
  const checked = checkedOptions(stage, options);
  await mkdir(o.outputs, { recursive: true });
  const ctx = context(o);
  await stage.run({ ...ctx, root, inputs: {} }, checked);
  return ctx.facts;
}
