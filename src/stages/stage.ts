/**
 * The stage contract. A *layer stage* changes the root filesystem: it runs with `root` mounted
 * as an overlay whose upper dir (`upper`) becomes its cached layer; a *base* layer stage
 * (bootstrap, import) fills `root` from nothing. An *artifact stage* reads a finished root and
 * writes files into `outputs`.
 *
 * Stages touch the host only through ctx (exec, chroot) and src/host; everything they start or
 * mount is released by the engine when they end, fail or are cancelled.
 */
import type { ChrootSession } from "../host/chroot.js";
import type { ExecOptions, ExecResult, LogSink } from "../host/exec.js";
import type { AptSource } from "../host/apt-sources.js";
import type { Tool } from "../host/tools.js";

export interface StageContext {
  /** Plan name of this stage, e.g. "packages" or "kernel:generic". */
  name: string;
  log: LogSink;
  signal: AbortSignal;
  workDir: string;
  /** Files the stage exports (a flavor's kernel; an artifact stage's products). */
  outputs: string;
  /** Proxy variables for downloads; never written into an image. */
  env: Record<string, string>;
  exec(argv: string[], opts?: Omit<ExecOptions, "log" | "signal" | "workDir">): Promise<ExecResult>;
  /** Stage-specific facts stored with the cache entry (kernel version …). */
  facts: Record<string, unknown>;
  /** Reports progress of a long step, 0..1. */
  progress(fraction: number): void;
}

export interface LayerContext extends StageContext {
  /** The root as the stage sees it: merged overlay (or, for a base stage, the empty tree to fill). */
  root: string;
  /** The layer's own directory: the overlay upper dir (the root itself for a base stage). */
  upper: string;
  aptArchives: string;
  hostSources: AptSource[];
  /** A chroot session on `root`, opened on first use and closed by the engine after the stage. */
  chroot(): Promise<ChrootSession>;
}

export interface ArtifactContext extends StageContext {
  /** Read-only view of the root the artifact is made from. */
  root: string;
  /** Files of other stages this one reads (the plan's `uses`), by name: host paths, read-only. */
  inputs: Record<string, string>;
}

export interface LayerStage<O> {
  kind: string;
  summary: string;
  /** A base stage writes a whole root with no layers below it. */
  base: boolean;
  tools: readonly Tool[];
  run(ctx: LayerContext, options: O): Promise<void>;
}

export interface ArtifactStage<O> {
  kind: string;
  summary: string;
  tools: readonly Tool[];
  /** Whether the stage needs the root mounted (a plain copy of an input does not). */
  needsRoot: boolean;
  run(ctx: ArtifactContext, options: O): Promise<void>;
}

export function defineLayerStage<O>(stage: LayerStage<O>): LayerStage<O> {
  return stage;
}

export function defineArtifactStage<O>(stage: ArtifactStage<O>): ArtifactStage<O> {
  return stage;
}
