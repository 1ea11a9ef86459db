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
 * Stages with nothing to do are left out, so their absence does not change later keys.
 */
import { KilnError } from "../errors.js";
import { computeKey, type KeyRecord } from "../cache/key.js";
import { debianArchiveUri, debianLinesFor, primaryMirror, type AptSource } from "../host/apt-sources.js";
import type { Tool, ToolVersions } from "../host/tools.js";
import type { LoadedRecipe } from "../recipe/load.js";
import type { Recipe } from "../recipe/schema.js";
import type { ConfigOptions } from "../stages/config.js";
import { ARTIFACT_STAGES, LAYER_STAGES } from "../stages/index.js";

export interface PlannedStage {
  /** Unique in the plan: "packages", "kernel:generic", "squashfs". */
  name: string;
  kind: string;
  section: "layers" | "artifacts";
  options: unknown;
  record: KeyRecord;
  key: string;
  /** An artifact stage that reads this flavor's kernel layer over the sealed root (qcow2). */
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

export interface PlanInputs {
  tools: ToolVersions;
  /** The import's format after magic detection ("auto" resolved by the engine). */
  importFormat?: "squashfs" | "qcow2" | "raw" | "tar";
  hostSources: AptSource[];
  /** sha256 of Kiln's initramfs assets: a change to the diskless hook rebuilds every kernel layer. */
  initramfsDigest: string;
  /** Per playbook (absolute path): "sha256:…" over the Ansible folders beside it (roles/, templates/ …). */
  playbookTrees?: Record<string, string>;
  /** The service's site CA certificates (absolute path → "sha256:…"), added to the root before the seal. */
  siteCas?: Record<string, string>;
}

export function planBuild(loaded: LoadedRecipe, env: PlanInputs): Plan {
  const r = loaded.recipe;
  const digestOf = (file: string) => loaded.inputs[file] ?? "missing";
  const stages: PlannedStage[] = [];
  let parent: string | null = null;
  const add = (section: "layers" | "artifacts", name: string, kind: string, options: unknown, inputs: Record<string, string>, par: string | null): PlannedStage => {
    const stage = section === "layers" ? LAYER_STAGES[kind] : ARTIFACT_STAGES[kind];
    if (!stage) throw new Error(`planner: unknown stage kind ${kind}`);
    const record: KeyRecord = { kind, parent: par, options: keyView(options), inputs, tools: pickTools(env.tools, stage.tools) };
    const s = { name, kind, section, options: runView(options), record, key: computeKey(record) };
    stages.push(s);
    return s;
  };
  const layer = (name: string, kind: string, options: unknown, inputs: Record<string, string> = {}) => {
    const s = add("layers", name, kind, options, inputs, parent);
    parent = s.key;
    return s;
  };

  // The base's Debian archive: extra suites of it (backports, proposed-updates) and kernels from them come from here.
  const archive =
    ("debian" in r.base ? (r.base.mirror ?? primaryMirror(r.base.debian, env.hostSources)) : undefined) ?? debianArchiveUri(env.hostSources);

  // Base
  if ("debian" in r.base) {
    const b = r.base;
    const aptLines = b.mirror
      ? [`deb ${b.mirror} ${b.debian} ${b.components.join(" ")}`]
      : debianLinesFor(b.debian, b.components, env.hostSources);
    if (aptLines.length === 0) {
      const uri = debianArchiveUri(env.hostSources);
      if (!uri) {
        throw new KilnError("RECIPE_INVALID", `${loaded.file}: base.mirror: this host has no Debian apt source to default to; set base.mirror, e.g. http://deb.debian.org/debian`);
      }
      aptLines.push(`deb ${uri} ${b.debian} ${b.components.join(" ")}`);
    }
    layer("bootstrap", "bootstrap", { suite: b.debian, variant: b.variant, aptLines });
  } else {
    layer("import", "import", { image: ref("base.image", r.base.image), format: env.importFormat ?? r.base.format }, { "base.image": digestOf(r.base.image) });
  }

  const config = configOptions(r);
  const install = r.config.apparmor === true && !r.packages.some((p) => /^apparmor([=/]|$)/.test(p)) ? [...r.packages, "apparmor"] : r.packages;
  const changesRoot =
    r.repositories.length + install.length + r.upgrade.length + r.files.length + r.caCertificates.length + r.scripts.length + r.ansible.length > 0 ||
    config !== undefined ||
    Object.keys(env.siteCas ?? {}).length > 0;
  const unchangedImport = "image" in r.base && !changesRoot;

  if (r.repositories.length > 0) {
    const inputs: Record<string, string> = {};
    const repos = r.repositories.map((repo, i) => {
      if (repo.key) inputs[`repositories[${i}].key`] = digestOf(repo.key);
      const uri = repo.uri ?? archive;
      if (!uri) {
        throw new KilnError("RECIPE_INVALID", `${loaded.file}: repositories[${i}].uri: required here, because this host has no Debian apt source to default to; give the archive's URL`);
      }
      return { name: repo.name, uri, suite: repo.suite, components: repo.components, pin: repo.pin, keyFile: repo.key ? ref(`repositories[${i}].key`, repo.key) : undefined };
    });
    layer("repositories", "repositories", { repositories: repos }, inputs);
  }
  if (install.length + r.upgrade.length > 0) {
    layer("packages", "packages", { install, upgrade: r.upgrade, upgradeSuites: r.repositories.map((x) => x.suite) });
  }
  if (r.files.length > 0) {
    const inputs: Record<string, string> = {};
    const files = r.files.map((f, i) => {
      if (f.source) inputs[`files[${i}].source`] = digestOf(f.source);
      return { path: f.path, content: f.content, sourceFile: f.source ? ref(`files[${i}].source`, f.source) : undefined, mode: f.mode, owner: f.owner };
    });
    layer("files", "files", { files }, inputs);
  }
  if (r.caCertificates.length > 0) {
    const inputs = Object.fromEntries(r.caCertificates.map((c, i) => [`caCertificates[${i}]`, digestOf(c)]));
    layer("ca-certificates", "ca-certificates", { certificates: r.caCertificates.map((c, i) => ref(`caCertificates[${i}]`, c)) }, inputs);
  }
  if (r.scripts.length > 0) {
    const inputs: Record<string, string> = {};
    const scripts = r.scripts.map((s, i) => {
      if (s.source) inputs[`scripts[${i}].source`] = digestOf(s.source);
      return { name: s.name, run: s.run, sourceFile: s.source ? ref(`scripts[${i}].source`, s.source) : undefined };
    });
    layer("scripts", "scripts", { scripts, recipeName: r.name }, inputs);
  }
  if (config) layer("config", "config", config);
  if (r.ansible.length > 0) {
    const inputs: Record<string, string> = {};
    const plays = r.ansible.map((a, i) => {
      inputs[`ansible[${i}].playbook`] = digestOf(a.playbook);
      inputs[`ansible[${i}].folder`] = env.playbookTrees?.[a.playbook] ?? "missing";
      return { playbook: ref(`ansible[${i}].playbook`, a.playbook), vars: a.vars };
    });
    layer("ansible", "ansible", { plays }, inputs);
  }
  const siteCas = Object.entries(env.siteCas ?? {});
  if (siteCas.length > 0) {
    const inputs = Object.fromEntries(siteCas.map(([, digest], i) => [`siteCa[${i}]`, digest]));
    layer("site-ca", "site-ca", { certificates: siteCas.map(([file], i) => ref(`siteCa[${i}]`, file)) }, inputs);
  }
  if (!unchangedImport) layer("seal", "seal", {});
  const root = [...stages];
  const sealed = parent as string | null;

  const kernels = r.kernels.map((k) => {
    const options = {
      flavor: k.flavor,
      package: k.package,
      suite: k.suite,
      suiteAptLine: k.suite && archive ? `deb ${archive} ${k.suite} main` : undefined,
      dkms: r.config.dkms?.length ? r.config.dkms : undefined,
    };
    const s = add("layers", `kernel:${k.flavor}`, "kernel", options, { "initramfs-assets": env.initramfsDigest }, sealed);
    return { ...s, flavor: k.flavor, package: k.package };
  });

  const artifacts: PlannedStage[] = [];
  const wants = new Set(r.outputs);
  // The ISO carries the squashfs, so it is made (and cached) even when not asked for itself.
  let squashfsStage: PlannedStage | undefined;
  if (wants.has("squashfs") || wants.has("iso")) {
    if (unchangedImport && (env.importFormat ?? (r.base as { format?: string }).format) === "squashfs") {
      squashfsStage = add("artifacts", "squashfs", "squashfs-copy", { image: ref("base.image", (r.base as { image: string }).image) }, { "base.image": digestOf((r.base as { image: string }).image) }, null);
    } else {
      squashfsStage = add("artifacts", "squashfs", "squashfs", squashfsOptions(r), {}, sealed);
    }
    artifacts.push(squashfsStage);
  }
  if (wants.has("manifest")) artifacts.push(add("artifacts", "manifest", "manifest", {}, {}, sealed));
  if (wants.has("tarball")) artifacts.push(add("artifacts", "tarball", "tarball", {}, {}, sealed));
  // Disk and ISO boot the first flavor: the GA kernel, as maas-images calls it.
  const ga = kernels[0];
  const cmdline = kernelCmdline(r);
  if (wants.has("qcow2") && ga) {
    const d = r.disk ?? { filesystem: "ext4" as const, partitions: [], compression: "zstd" as const };
    const options = { name: r.name, flavor: ga.flavor, cmdline, size: d.size, filesystem: d.filesystem, partitions: d.partitions, compression: d.compression };
    const qcow2: PlannedStage = add("artifacts", "qcow2", "qcow2", options, {}, ga.key);
    qcow2.flavor = ga.flavor;
    artifacts.push(qcow2);
  }
  if (wants.has("iso") && ga && squashfsStage) {
    const uses: Record<string, StageFile> = {
      squashfs: { section: "artifacts", key: squashfsStage.key, file: "squashfs" },
      kernel: { section: "layers", key: ga.key, file: "boot-kernel" },
      initrd: { section: "layers", key: ga.key, file: "boot-initrd" },
    };
    const inputs = Object.fromEntries(Object.entries(uses).map(([n, u]) => [n, `stage:${u.key}/${u.file}`]));
    const iso: PlannedStage = add("artifacts", "iso", "iso", { name: r.name, flavor: ga.flavor, cmdline }, inputs, null);
    iso.uses = uses;
    artifacts.push(iso);
  }

  return {
    recipe: { name: r.name, file: loaded.file, sha256: loaded.sha256 },
    root,
    kernels,
    artifacts,
    unchangedImport,
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

/** The config layer's options, or undefined when the profile changes no file in the root. */
function configOptions(r: Recipe): ConfigOptions | undefined {
  const c = r.config;
  const o: ConfigOptions = {
    sysctl: Object.entries(c.sysctl ?? {}).map(([key, value]) => [key, String(value)] as [string, string]),
    limits: c.limits ?? [],
    modules: c.modules ?? [],
    blacklist: c.blacklist ?? [],
    permissions: c.permissions ?? [],
    groups: c.groups ?? [],
    users: c.users ?? [],
    units: { enable: c.units?.enable ?? [], disable: c.units?.disable ?? [], mask: c.units?.mask ?? [] },
  };
  const count = o.sysctl.length + o.limits.length + o.modules.length + o.blacklist.length + o.permissions.length + o.groups.length + o.users.length + o.units.enable.length + o.units.disable.length + o.units.mask.length;
  return count > 0 ? o : undefined;
}

function squashfsOptions(r: Recipe): { compression: "zstd" | "xz"; level?: number } {
  return r.squashfs.compression === "xz" ? { compression: "xz" } : { compression: "zstd", level: r.squashfs.level ?? 3 };
}

/**
 * A reference to an input file. Stages get the absolute path; the key gets the input's name (its
 * content is keyed through the digest in `inputs`), so moving a recipe folder keeps its cache.
 */
interface InputRef {
  $input: string;
  path: string;
}

function ref(name: string, file: string): InputRef {
  return { $input: name, path: file };
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

function pickTools(all: ToolVersions, wanted: readonly Tool[]): Record<string, string> {
  return Object.fromEntries(wanted.map((t) => [t, all[t] ?? "unknown"]));
}

/** Every tool any stage of the plan needs (checked and versioned before planning). */
export function toolsFor(r: Recipe): Tool[] {
  const tools = new Set<Tool>(["chroot", "dpkg-query"]);
  const add = (ts: readonly Tool[]) => ts.forEach((t) => tools.add(t));
  add("debian" in r.base ? LAYER_STAGES.bootstrap!.tools : LAYER_STAGES.import!.tools);
  if (r.outputs.includes("squashfs")) add(ARTIFACT_STAGES.squashfs!.tools);
  if (r.outputs.includes("tarball")) add(ARTIFACT_STAGES.tarball!.tools);
  if (r.ansible.length > 0) add(LAYER_STAGES.ansible!.tools);
  if (r.outputs.includes("iso")) add([...ARTIFACT_STAGES.iso!.tools, ...ARTIFACT_STAGES.squashfs!.tools]);
  if (r.outputs.includes("qcow2")) add(ARTIFACT_STAGES.qcow2!.tools);
  return [...tools];
}
