/**
 * The planner: recipe → the ordered stages of a build, each with its content key. Pure: it reads
 * no files and touches no host (digests of input files and tool versions are handed in), so
 * `kiln plan` and the key tests run in milliseconds without root.
 *
 *   root chain:  bootstrap|import → repositories → packages → files → ca-certificates → scripts
 *                → config → ansible → seal
 *   kernels:     one layer per flavor, each on the sealed root (siblings: N flavors, N small layers)
 *   artifacts:   squashfs, manifest, tarball from the sealed root; kernel/initrd from each flavor;
 *                qcow2 from the first flavor's layer over the sealed root; iso from the squashfs
 *                and the first flavor's kernel and initrd
 *
 * The stages themselves say how they are planned (src/stages/*.ts, `plan`): this loop walks
 * STAGES (src/stages/index.ts) in order, keys each instance and puts it in its place. Stages with
 * nothing to do are left out, so their absence does not change later keys.
 */
import { computeKey, type KeyRecord } from "../cache/key.js";
import { debianArchiveUri, primaryMirror } from "../host/apt-sources.js";
import type { Tool, ToolVersions } from "../host/tools.js";
import type { LoadedRecipe } from "../recipe/load.js";
import type { Recipe } from "../recipe/schema.js";
import { STAGES } from "../stages/index.js";
import type { InputRef, PlanContext, PlanHost } from "../stages/stage.js";

export interface PlannedStage {
  /** Unique in the plan: "packages", "kernel:generic", "squashfs". */
  name: string;
  kind: string;
  section: "layers" | "artifacts";
  options: unknown;
  record: KeyRecord;
  key: string;
  /** The flavor it belongs to (a kernel layer; a disk or ISO of that kernel): out/ puts its files under <flavor>/. */
  flavor?: string;
  /** Files made by other stages that this one reads (the engine passes their paths as ctx.inputs). */
  uses?: Record<string, StageFile>;
}

/** A file in another stage's outputs; its content is keyed through that stage's key. */
export interface StageFile {
  section: "layers" | "artifacts";
  key: string;
  file: string;
}

export interface Plan {
  recipe: { name: string; file: string; sha256: string };
  /** The root chain, base first; the last one is the sealed root. */
  root: PlannedStage[];
  kernels: Array<PlannedStage & { flavor: string; package: string }>;
  artifacts: PlannedStage[];
  /** An import with nothing asked of the root: the original squashfs is published unchanged. */
  unchangedImport: boolean;
}

export interface PlanInputs extends PlanHost {
  tools: ToolVersions;
}

export type { PlanHost };

export function planBuild(loaded: LoadedRecipe, env: PlanInputs): Plan {
  return planStages(loaded, env, (tool, kind) => {
    const v = env.tools[tool];
    // toolsFor lists every tool of every stage a plan has, so this is a Kiln bug, never a key with "unknown" in it.
    if (v === undefined) throw new Error(`planner: stage ${kind} drives ${tool}, but no version of it was looked up (toolsFor)`);
    return v;
  });
}

/**
 * Every host tool the stages of this recipe's plan drive (their versions go into the keys), and
 * the two every build runs (chroot for sessions, dpkg-query for versions and manifests). Derived
 * from the stages' own `tools`, so a stage's new tool cannot be missed.
 */
export function toolsFor(loaded: LoadedRecipe, host: PlanHost): Tool[] {
  const tools = new Set<Tool>(["chroot", "dpkg-query"]);
  planStages(loaded, host, (tool) => {
    tools.add(tool);
    return "";
  });
  return [...tools];
}

/** The planner's loop: each stage of STAGES, in order, says what instances of it the recipe needs. */
function planStages(loaded: LoadedRecipe, host: PlanHost, versionOf: (tool: Tool, kind: string) => string): Plan {
  const r = loaded.recipe;
  const root: PlannedStage[] = [];
  const kernels: Plan["kernels"] = [];
  const artifacts: PlannedStage[] = [];
  const all: PlannedStage[] = [];
  const ctx: PlanContext = {
    recipe: r,
    file: loaded.file,
    wants: new Set(r.outputs),
    digestOf: (file) => loaded.inputs[file] ?? "missing",
    ref: (name, file) => ({ $input: name, path: file }),
    archive: ("debian" in r.base ? (r.base.mirror ?? primaryMirror(r.base.debian, host.hostSources)) : undefined) ?? debianArchiveUri(host.hostSources),
    host,
    // Asked so far: an import whose root chain holds nothing but the import itself.
    get unchangedImport() {
      return "image" in r.base && root.length === 1;
    },
    cmdline: kernelCmdline(r),
    planned: (kind) => all.filter((s) => s.kind === kind),
  };
  for (const stage of STAGES) {
    const items = stage.plan(ctx);
    for (const item of items) {
      // By default a stage is built on the root chain as it stands: its top for a root stage, the sealed root after it.
      const parent = item.parent !== undefined ? (item.parent?.key ?? null) : (root.at(-1)?.key ?? null);
      const record: KeyRecord = {
        kind: stage.kind,
        parent,
        options: keyView(item.options),
        // A locked build's lock is an input of the base stage, and so, through the parents, of every key.
        inputs: { ...(item.inputs ?? {}), ...(host.lock !== undefined && parent === null && stage.section === "layers" ? { "kiln.lock": host.lock } : {}) },
        tools: Object.fromEntries(stage.tools.map((t) => [t, versionOf(t, stage.kind)])),
      };
      const s: PlannedStage = { name: item.name ?? stage.kind, kind: stage.kind, section: stage.section, options: runView(item.options), record, key: computeKey(record) };
      if (item.flavor !== undefined) s.flavor = item.flavor;
      if (item.uses) s.uses = Object.fromEntries(Object.entries(item.uses).map(([n, u]) => [n, { section: u.section, key: u.stage.key, file: u.file }]));
      all.push(s);
      if (stage.section === "artifacts") artifacts.push(s);
      else if (stage.place === "root") root.push(s);
      else kernels.push({ ...s, flavor: item.flavor ?? s.name, package: item.package ?? "" });
    }
  }
  return {
    recipe: { name: r.name, file: loaded.file, sha256: loaded.sha256 },
    root,
    kernels,
    artifacts,
    unchangedImport: ctx.unchangedImport,
  };
}

/**
 * The kernel command line the recipe asks for, after the words a boot method adds itself (root=…):
 * the top-level cmdline, config.cmdline, then what huge pages and AppArmor need.
 */
export function kernelCmdline(r: Recipe): string[] {
  const words = [...r.cmdline, ...(r.config.cmdline ?? [])];
  const pools = r.config.hugepages ?? [];
  if (pools.length > 0 && pools[0]!.size !== "2M") words.push(`default_hugepagesz=${pools[0]!.size}`);
  for (const p of pools) words.push(`hugepagesz=${p.size}`, `hugepages=${p.count}`);
  if (r.config.apparmor === true) words.push("apparmor=1", "security=apparmor");
  if (r.config.apparmor === false) words.push("apparmor=0");
  return words;
}

function isRef(v: unknown): v is InputRef {
  return typeof v === "object" && v !== null && "$input" in v;
}

function mapRefs(v: unknown, f: (r: InputRef) => string): unknown {
  if (isRef(v)) return f(v);
  if (Array.isArray(v)) return v.map((x) => mapRefs(x, f));
  if (v && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, mapRefs(x, f)]));
  return v;
}

const keyView = (o: unknown) => mapRefs(o, (r) => r.$input);
const runView = (o: unknown) => mapRefs(o, (r) => r.path);
