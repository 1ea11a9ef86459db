/**
 * The stage contract, and the one place a stage is declared (docs/architecture.md#adding-a-stage).
 * A stage module says everything about its stage: its options (a zod schema the engine checks
 * before `run`), how the planner makes it from a recipe (`plan`: which recipe fields and input
 * files it digests, what it is built on), the host tools it drives (their versions go into its
 * key), what it exports (`outputs`: files with their artifact kind and out/ path) and the facts
 * it records (a zod schema: readers parse, never cast).
 *
 * A *layer stage* changes the root filesystem: it runs with `root` mounted as an overlay whose
 * upper dir (`upper`) becomes its cached layer; a *base* layer stage (bootstrap, import) fills
 * `root` from nothing. A layer stage is part of the root chain (`place: "root"`) or one of the
 * siblings on the sealed root (`place: "flavor"`: a kernel flavor). An *artifact stage* reads a
 * finished root and writes files into `outputs`.
 *
 * Stages touch the host only through ctx (exec, chroot) and src/host; everything they start or
 * mount is released by the engine when they end, fail or are cancelled.
 */
import { z } from "zod";
import type { ARTIFACT_KINDS } from "../artifacts/types.js";
import type { ChrootSession } from "../host/chroot.js";
import type { ExecOptions, ExecResult, LogSink } from "../host/exec.js";
import type { AptSource } from "../host/apt-sources.js";
import type { Tool } from "../host/tools.js";
import type { Recipe } from "../recipe/schema.js";
import type { IdSeed } from "./reproducible.js";

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
  /**
   * The build's SOURCE_DATE_EPOCH (docs/reproducible.md), also in `env` and in the environment
   * of `exec`; absent for the base stage (it fixes the epoch) and outside a build (customize jobs).
   */
  epoch?: number;
  /** What identifiers (UUIDs, volume ids) are derived from, with `epoch`; absent: they are random. */
  ids?: IdSeed;
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
  /** A locked build's apt preferences (docs/lock.md): every apt run of the stage must choose those versions. */
  aptPins?: string;
  /** Records what an apt lists dir says of the packages now installed in `root` (suites, .deb digests) for kiln.lock; chroot sessions do it themselves. */
  recordAptLists?(listsDir: string): Promise<void>;
  /**
   * Keeps the indexes of an apt lists dir in the layer's cache entry when a layer is built on
   * this one (docs/cache.md#apt-lists), moving them out of `listsDir`; chroot sessions do it themselves.
   */
  keepAptLists?(listsDir: string): Promise<void>;
}

export interface ArtifactContext extends StageContext {
  /** Read-only view of the root the artifact is made from. */
  root: string;
  /** Files of other stages this one reads (the plan's `uses`), by name: host paths, read-only. */
  inputs: Record<string, string>;
}

/** What the planner tells a stage's `plan` about the build. */
export interface PlanContext {
  recipe: Recipe;
  /** The recipe file (for error messages). */
  file: string;
  /** Which recipe outputs are asked for. */
  wants: ReadonlySet<string>;
  /** "sha256:…" of an input file the recipe names, or "missing". */
  digestOf(file: string): string;
  /**
   * A reference to an input file in options: the stage gets the path, the key gets `name` (the
   * content is keyed through `inputs`), so moving a recipe folder keeps its cache.
   */
  ref(name: string, file: string): InputRef;
  /** The base's Debian archive: extra suites (backports) and kernels from them come from here. */
  archive: string | undefined;
  /** Host facts the planner was handed (apt sources, import format, digests of trees). */
  host: PlanHost;
  /** An import with nothing asked of the root: the original squashfs is published unchanged. */
  unchangedImport: boolean;
  /** The kernel command line the recipe asks for (plan.ts, kernelCmdline). */
  cmdline: string[];
  /** Stages planned before this one (earlier in the stage list), by kind. */
  planned(kind: string): readonly PlannedRef[];
}

/** What the planner knows of this host: its apt sources, the service's site CAs, and each stage's `hostFacts`. */
export interface PlanHost extends HostFacts {
  hostSources: AptSource[];
  /** The service's site CA certificates (absolute path → "sha256:…"), added to the root before the seal. */
  siteCas?: Record<string, string>;
  /** A locked build's lock ("sha256:…" of kiln.lock): an input of the base stage, so of every key (docs/lock.md). */
  lock?: string;
}

/** Facts a stage looks up on the host before planning (its `hostFacts`), so the planner stays pure. */
export interface HostFacts {
  /** The import's format after magic detection ("auto" resolved). */
  importFormat?: "squashfs" | "qcow2" | "raw" | "tar";
  /** sha256 of Kiln's initramfs assets: a change to the diskless hook rebuilds every kernel layer. */
  initramfsDigest?: string;
  /** Per playbook (absolute path): "sha256:…" over the Ansible folders beside it (roles/, templates/ …). */
  playbookTrees?: Record<string, string>;
}

export interface InputRef {
  $input: string;
  path: string;
}

/** A stage the planner made, as later stages' `plan` sees it. */
export interface PlannedRef {
  name: string;
  kind: string;
  key: string;
  options: unknown;
  flavor?: string;
}

/** One instance of a stage in a plan, as its `plan` makes it. */
export interface PlanItem {
  /** Unique in the plan; the stage's kind when absent. */
  name?: string;
  /** The options `run` gets, with InputRefs where input files go. */
  options: unknown;
  /** Digests of what the options do not hold by value (input files, trees), by name. */
  inputs?: Record<string, string>;
  /**
   * What it is built on, when not the default (root stages: the chain so far; flavors and
   * artifacts: the sealed root): another planned stage, or nothing.
   */
  parent?: PlannedRef | null;
  /** Files of other stages this one reads: the engine passes their paths as ctx.inputs. */
  uses?: Record<string, { stage: PlannedRef; section: "layers" | "artifacts"; file: string }>;
  /** The flavor this instance belongs to (a kernel, a disk or ISO of that kernel). */
  flavor?: string;
  /** A flavor's kernel package. */
  package?: string;
}

/** A file a stage exports, as out/ gets it. */
export interface StageOutput {
  /** File name in the stage's outputs. */
  file: string;
  /** Its entry in the media-type table (artifacts/types.ts). Its out/ path is `<flavor>/<file>` for an instance with a flavor, else `<file>`. */
  artifact: keyof typeof ARTIFACT_KINDS;
  /** Placed in out/ only when the recipe asks for this output (an ISO's squashfs is made anyway). */
  output: string;
}

interface StageCommon<S extends z.ZodType, F extends z.ZodType> {
  kind: string;
  summary: string;
  /** The options `run` accepts; the engine validates the planned options with it first. */
  options: S;
  /** The facts `run` records in ctx.facts; the engine checks them, readers parse with it. */
  facts?: F;
  /** Host tools it drives: checked before a build, their versions part of its key. */
  tools: readonly Tool[];
  /** Its instances in a build of this recipe (none: the stage is left out). */
  plan(ctx: PlanContext): PlanItem[];
  /** What it must know of the host to be planned (read files, probe an image), looked up before planning. */
  hostFacts?(recipe: Recipe): Promise<HostFacts>;
  outputs?: readonly StageOutput[];
}

export interface LayerStage<S extends z.ZodType = z.ZodType, F extends z.ZodType = z.ZodType> extends StageCommon<S, F> {
  section: "layers";
  /** "root": a link of the root chain; "flavor": a sibling layer on the sealed root. */
  place: "root" | "flavor";
  /** A base stage writes a whole root with no layers below it. */
  base: boolean;
  run(ctx: LayerContext, options: z.output<S>): Promise<void>;
}

export interface ArtifactStage<S extends z.ZodType = z.ZodType, F extends z.ZodType = z.ZodType> extends StageCommon<S, F> {
  section: "artifacts";
  /** Whether the stage needs the root mounted (a plain copy of an input does not). */
  needsRoot: boolean;
  run(ctx: ArtifactContext, options: z.output<S>): Promise<void>;
}

export type Stage = LayerStage | ArtifactStage;

export function defineLayerStage<S extends z.ZodType, F extends z.ZodType = z.ZodType>(
  stage: Omit<LayerStage<S, F>, "section" | "place"> & { place?: "root" | "flavor" },
): LayerStage<S, F> {
  return { ...stage, section: "layers", place: stage.place ?? "root" };
}

export function defineArtifactStage<S extends z.ZodType, F extends z.ZodType = z.ZodType>(stage: Omit<ArtifactStage<S, F>, "section">): ArtifactStage<S, F> {
  return { ...stage, section: "artifacts" };
}

/**
 * The options a stage runs with, checked against its schema. The planner or a job made them, not
 * a user (recipes are checked when loaded), so a mismatch is a Kiln bug: it says which stage and field.
 */
export function checkedOptions<S extends z.ZodType>(stage: { kind: string; options: S }, options: unknown): z.output<S> {
  const r = stage.options.safeParse(options);
  if (!r.success) throw new Error(`stage ${stage.kind}: options do not match its schema (a Kiln bug): ${z.prettifyError(r.error)}`);
  return r.data;
}

/** A stage's recorded facts, parsed with its schema (a stage without one records none). */
export function factsOf<F extends z.ZodType>(stage: { kind: string; facts?: F }, facts: unknown): z.output<F> {
  if (!stage.facts) throw new Error(`stage ${stage.kind} records no facts`);
  const r = stage.facts.safeParse(facts);
  if (!r.success) throw new Error(`stage ${stage.kind}: recorded facts do not match its schema: ${z.prettifyError(r.error)}`);
  return r.data;
}
