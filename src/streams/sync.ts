/**
 * `kiln streams sync CONFIG`: keeps a stream current. For each image the config lists, Kiln
 * decides whether a new version is due, builds only those, publishes them, applies retention and
 * says what it did; when nothing is due it changes nothing (maas-images' meph2-cloudimg-sync is the model:
 * meph2-cloudimg-sync builds what the target lacks).
 *
 * A new version is due when
 *  - a flavor the config asks for has no product in the stream yet;
 *  - the plan changed: any stage key differs from the build the stream's newest version came from
 *    (the recipe, a file it references, a tool version, Kiln's initramfs hook);
 *  - a package in the newest version's manifest has a newer candidate in the recipe's apt sources
 *    (asked of apt itself, with the recipe's sources, keys and pins, in a private state folder);
 *  - a flavor's kernel package now depends on another kernel than the one published.
 * A rebuild for newer packages is forced from the first stage that installed an outdated package
 * (`--from`), because its key, made of the recipe alone, did not change.
 */
import { readFile } from "node:fs/promises";
import path from "node:path";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { sha256Hex } from "../cache/key.js";
import { CacheStore } from "../cache/store.js";
import { build, prepareBuild } from "../engine/build.js";
import type { EventSink } from "../engine/events.js";
import { KilnError } from "../errors.js";
import { capture, type LogSink } from "../host/exec.js";
import type { Plan } from "../plan/plan.js";
import { checkSigning, commitStream } from "./commit.js";
import { compareDebVersions } from "./deb-version.js";
import { versionsNewestFirst } from "./format.js";
import { publishBootloaders, type BootloaderReport } from "./bootloaders.js";
import { checkNaming, DEFAULT_PREFIX, imageContentId, imageProductName, type StreamNaming } from "./names.js";
import { openPrivateApt } from "./private-apt.js";
import { publish, type PublishReport } from "./publish.js";
import { parseDuration, type OrphanReport } from "./retention.js";
import type { Signer } from "./sign.js";
import { StreamDir } from "./stream-dir.js";

const ImageSchema = z
  .object({
    recipe: z.string().min(1).describe("Recipe file, relative to the config"),
    release: z.string().optional().describe("Debian release; checked against the recipe's base.debian"),
    arch: z.string().optional().describe("dpkg architecture; must be this host's"),
    flavors: z.array(z.string()).min(1).optional().describe("Kernel flavors to publish (default: all of the recipe's)"),
    subarch: z.string().default("generic"),
  })
  .strict();

export const SyncConfigSchema = z
  .object({
    stream: z.string().min(1).describe("Stream folder, relative to the config"),
    label: z.string().default("candidate"),
    prefix: z.string().default(DEFAULT_PREFIX),
    contentId: z.string().optional(),
    keep: z.number().int().min(1).optional().describe("Versions to keep per product"),
    grace: z.string().default("3d").describe("How long unreferenced files stay"),
    signKey: z.string().optional(),
    passphraseFile: z.string().optional(),
    outDir: z.string().optional().describe("Where builds go (default: kiln-sync-out beside the config)"),
    verify: z.boolean().optional().describe("Boot-verify before publishing (default: each recipe's verify)"),
    bootloaders: z.boolean().default(false).describe("Also keep the bootloader products current"),
    images: z.array(ImageSchema).min(1),
  })
  .strict();

export type SyncConfig = Omit<z.infer<typeof SyncConfigSchema>, "outDir"> & { outDir: string; file: string; dir: string; graceSeconds: number };

export async function loadSyncConfig(file: string): Promise<SyncConfig> {
  let data: unknown;
  try {
    data = parseYaml(await readFile(file, "utf8"));
  } catch (e) {
    throw new KilnError("INPUT_INVALID", `${file}: cannot read it as YAML (${(e as Error).message})`);
  }
  const r = SyncConfigSchema.safeParse(data);
  if (!r.success) {
    const problems = r.error.issues.map((i) => ({ path: i.path.join("."), message: i.message }));
    throw new KilnError("INPUT_INVALID", `${file}: ${problems.map((p) => `${p.path || "(top)"}: ${p.message}`).join("; ")}`, { problems });
  }
  const dir = path.dirname(path.resolve(file));
  const graceSeconds = parseDuration(r.data.grace);
  if (graceSeconds === undefined) throw new KilnError("INPUT_INVALID", `${file}: grace: ${JSON.stringify(r.data.grace)} is not a duration; use e.g. 3d, 12h or 0`);
  const c = r.data;
  const rel = (p: string | undefined) => (p === undefined ? undefined : path.resolve(dir, p));
  checkNaming({ prefix: c.prefix, contentId: c.contentId }, [c.label]);
  return {
    ...c,
    stream: rel(c.stream)!,
    signKey: rel(c.signKey),
    passphraseFile: rel(c.passphraseFile),
    outDir: rel(c.outDir) ?? path.join(dir, "kiln-sync-out"),
    images: c.images.map((i) => ({ ...i, recipe: rel(i.recipe)! })),
    file: path.resolve(file),
    dir,
    graceSeconds,
  };
}

export interface SyncOptions {
  cacheDir: string;
  now?: () => Date;
  signer?: Signer;
  /** Decide only; build and publish nothing. */
  dryRun?: boolean;
  signal: AbortSignal;
  emit: EventSink;
  /** Progress lines for the operator. */
  say: (line: string) => void;
  log?: LogSink;
}

export interface ImageDecision {
  recipe: string;
  name: string;
  release: string;
  arch: string;
  flavors: string[];
  due: boolean;
  reasons: string[];
  /** Stage to rebuild from (newer packages with an unchanged recipe). */
  from?: string;
  packages: number;
}

export interface SyncReport {
  decisions: ImageDecision[];
  published: PublishReport[];
  bootloaders?: BootloaderReport;
  reaped?: OrphanReport;
  changed: boolean;
}

export async function sync(c: SyncConfig, o: SyncOptions): Promise<SyncReport> {
  const now = o.now ?? (() => new Date());
  const naming: StreamNaming = { prefix: c.prefix, contentId: c.contentId };
  const dir = new StreamDir(c.stream);
  await checkSigning(dir, o.signer);
  const report: SyncReport = { decisions: [], published: [], changed: false };
  const names = new Map<string, string>();
  const planned: Array<{ d: ImageDecision; plan: Plan }> = [];
  for (const image of c.images) {
    const { loaded, plan } = await prepareBuild(image.recipe);
    const d = await decide(c, image, plan, loaded.recipe.kernels.map((k) => k.flavor), naming, dir, o);
    for (const f of d.flavors) {
      const product = imageProductName(naming, c.label, d.release, d.arch, image.subarch, f);
      if (names.has(product)) throw new KilnError("INPUT_INVALID", `${c.file}: ${names.get(product)} and ${image.recipe} would both publish ${product}; give one of them another subarch`);
      names.set(product, image.recipe);
    }
    report.decisions.push(d);
    planned.push({ d, plan });
    o.say(`${d.name} (${d.release}/${d.arch}: ${d.flavors.join(", ")}): ${d.due ? "new version due" : "up to date"}: ${d.reasons.join("; ")}`);
  }
  if (o.dryRun) return report;

  for (const { d } of planned.filter((p) => p.d.due)) {
    const image = c.images.find((i) => i.recipe === d.recipe)!;
    const out = path.join(c.outDir, d.name);
    o.say(`${d.name}: building${d.from ? ` from ${d.from}` : ""} into ${out}`);
    await build({ recipeFile: d.recipe, outDir: out, cacheDir: o.cacheDir, from: d.from, verify: c.verify, signal: o.signal, emit: o.emit });
    const p = await publish([out], {
      to: c.stream, label: c.label, naming, keep: c.keep, graceSeconds: c.graceSeconds, now: now(), signer: o.signer,
      subarch: image.subarch, flavors: d.flavors, recipeFile: d.recipe,
    });
    report.published.push(p);
    report.changed = true;
  }
  if (c.bootloaders) {
    report.bootloaders = await publishBootloaders({
      to: c.stream, label: c.label, naming, keep: c.keep, graceSeconds: c.graceSeconds, now: now(), signer: o.signer,
      aptDir: path.join(o.cacheDir, "streams", "apt-bootloaders"), log: o.log,
    });
    if (report.bootloaders.products.some((p) => p.isNew)) report.changed = true;
  }
  if (!report.changed) {
    // Nothing new: still delete files whose grace period ran out, but touch nothing else.
    const state = await dir.readState();
    const due = Object.values(state.orphans).some((since) => now().getTime() >= new Date(since).getTime() + c.graceSeconds * 1000);
    if (due) {
      const lock = await dir.lock();
      try {
        report.reaped = await commitStream(dir, [], await dir.readState(), { now: now(), graceSeconds: c.graceSeconds, signer: o.signer });
        report.changed = report.reaped.reaped.length > 0;
      } finally {
        await lock.release();
      }
    }
  }
  return report;
}

async function decide(
  c: SyncConfig,
  image: SyncConfig["images"][number],
  plan: Plan,
  recipeFlavors: string[],
  naming: StreamNaming,
  dir: StreamDir,
  o: SyncOptions,
): Promise<ImageDecision> {
  const recipeRelease = plan.root[0]?.kind === "bootstrap" ? (plan.root[0].options as { suite: string }).suite : undefined;
  const release = image.release ?? recipeRelease;
  if (!release) throw new KilnError("INPUT_INVALID", `${c.file}: images[${c.images.indexOf(image)}].release: required for a recipe that imports its base`);
  if (recipeRelease && image.release && image.release !== recipeRelease) {
    throw new KilnError("INPUT_INVALID", `${c.file}: images[${c.images.indexOf(image)}].release: ${image.release}, but ${image.recipe} bootstraps ${recipeRelease}`);
  }
  const hostArch = await capture(["dpkg", "--print-architecture"]);
  if (image.arch && image.arch !== hostArch) throw new KilnError("INPUT_INVALID", `${c.file}: images[${c.images.indexOf(image)}].arch: ${image.arch}, but this host builds ${hostArch} only`);
  const flavors = image.flavors ?? recipeFlavors;
  for (const f of flavors) if (!recipeFlavors.includes(f)) throw new KilnError("INPUT_INVALID", `${c.file}: images[${c.images.indexOf(image)}].flavors: ${image.recipe} has no flavor ${f}; it has ${recipeFlavors.join(", ")}`);
  const d: ImageDecision = { recipe: image.recipe, name: plan.recipe.name, release, arch: hostArch, flavors, due: true, reasons: [], packages: 0 };

  const products = await dir.readProducts(imageContentId(naming, c.label));
  const latest = flavors.map((f) => {
    const p = products?.products[imageProductName(naming, c.label, release, hostArch, image.subarch, f)];
    return p ? versionsNewestFirst(p)[0] : undefined;
  });
  const missing = flavors.filter((_, i) => latest[i] === undefined);
  if (missing.length === flavors.length) return { ...d, reasons: ["not in the stream yet"] };
  if (missing.length > 0) return { ...d, reasons: [`flavor ${missing.join(", ")} not in the stream yet`] };
  const version = latest.sort().reverse()[0]!;
  const base = `${release}/${hostArch}/${version}`;
  const record = (await dir.readState()).builds[base];
  if (!record) return { ...d, reasons: [`${base} has no build record (published by an older Kiln or by hand)`] };

  const stages = [...plan.root, ...plan.kernels.filter((k) => flavors.includes(k.flavor)), ...plan.artifacts];
  const changed = stages.filter((s) => record.stages[s.name] !== s.key).map((s) => s.name);
  if (changed.length > 0) {
    const why = plan.recipe.sha256 !== record.recipe.sha256 ? "the recipe changed" : "the plan changed";
    return { ...d, reasons: [`${why} since ${version} (new keys: ${changed.join(", ")})`] };
  }

  // Same plan: are there newer packages than the ones published?
  const manifestItem = products!.products[imageProductName(naming, c.label, release, hostArch, image.subarch, flavors[0]!)]!.versions[version]!.items.manifest;
  const manifestText = manifestItem ? await readFile(dir.abs(manifestItem.path), "utf8").catch(() => undefined) : undefined;
  if (manifestText === undefined) return { ...d, reasons: [`${base}: its manifest is missing from the stream`] };
  const installed = new Map(
    manifestText.split("\n").filter((l) => l.includes("\t")).map((l) => {
      const [name, ver] = l.split("\t");
      return [name!.replace(/:[a-z0-9]+$/, ""), ver!.trim()] as const;
    }),
  );
  d.packages = installed.size;
  const apt = await openPrivateApt(path.join(o.cacheDir, "streams", `apt-${sha256Hex(JSON.stringify(aptSourcesOf(plan))).slice(0, 16)}`), hostArch, aptSourcesOf(plan), o.log);
  await apt.update();
  const candidates = await apt.candidates([...installed.keys()]);
  const newer = [...installed].filter(([name, ver]) => {
    const cand = candidates.get(name);
    return cand !== undefined && compareDebVersions(cand, ver) > 0;
  });
  const kernels: string[] = [];
  for (const f of flavors) {
    const k = record.kernels[f];
    if (!k?.version) continue;
    const deps = (await apt.showCandidate(k.kpackage))?.Depends ?? "";
    const images = deps.split(",").map((x) => x.trim().split(/[\s|]/)[0]!).filter((n) => n.startsWith("linux-image-"));
    if (images.length > 0 && !images.some((n) => n.endsWith(`-${k.version}`) || n === `linux-image-${k.version}`)) kernels.push(`${f}: ${k.kpackage} now brings ${images.join(", ")} (published: ${k.version})`);
  }
  if (newer.length === 0 && kernels.length === 0) {
    return { ...d, due: false, reasons: [`${version}: recipe unchanged, ${installed.size} packages and ${flavors.length} kernels current`] };
  }
  const reasons = [
    ...(newer.length > 0 ? [`newer packages: ${newer.slice(0, 8).map(([n, v]) => `${n} ${v} → ${candidates.get(n)}`).join(", ")}${newer.length > 8 ? ` and ${newer.length - 8} more` : ""}`] : []),
    ...kernels.map((k) => `newer kernel for ${k}`),
  ];
  return { ...d, reasons, from: await rebuildFrom(plan, o.cacheDir, newer, kernels.length > 0 ? flavors.filter((f) => kernels.some((k) => k.startsWith(`${f}:`))) : []) };
}

/**
 * The stage to force so the outdated packages are installed anew: the base, when it holds one of
 * them (its cached layer's dpkg status has the old version); else the first stage after it (the
 * packages stage runs apt); for kernel updates alone, the first outdated flavor.
 */
async function rebuildFrom(plan: Plan, cacheDir: string, newer: Array<readonly [string, string]>, kernelFlavors: string[]): Promise<string | undefined> {
  const base = plan.root[0]!;
  if (newer.length === 0) return kernelFlavors.length > 0 ? `kernel:${kernelFlavors[0]}` : undefined;
  if (base.kind === "bootstrap") {
    const status = await readFile(path.join(new CacheStore(cacheDir).tree(base.key), "var/lib/dpkg/status"), "utf8").catch(() => "");
    const inBase = new Set(status.split("\n\n").map((s) => `${/^Package: (.*)$/m.exec(s)?.[1]}\t${/^Version: (.*)$/m.exec(s)?.[1]}`));
    if (newer.some(([n, v]) => inBase.has(`${n}\t${v}`))) return base.name;
  }
  return plan.root[1]?.name ?? base.name;
}

/** The apt sources a build of this plan installs from: the base's lines, extra repositories with keys and pins, kernel suites, the upgrade pin. */
function aptSourcesOf(plan: Plan): Parameters<typeof openPrivateApt>[2] {
  const lines: string[] = [];
  let preferences = "";
  let repositories: Array<{ name: string; uri: string; suite: string; components: string[]; pin?: number; keyFile?: string }> = [];
  for (const s of plan.root) {
    if (s.kind === "bootstrap") lines.push(...(s.options as { aptLines: string[] }).aptLines);
    if (s.kind === "repositories") repositories = (s.options as { repositories: typeof repositories }).repositories;
    if (s.kind === "packages") {
      const p = s.options as { upgrade: string[]; upgradeSuites: string[] };
      if (p.upgrade.length > 0) preferences += p.upgradeSuites.map((suite) => `Package: ${p.upgrade.join(" ")}\nPin: release n=${suite}\nPin-Priority: 990\n`).join("\n");
    }
  }
  for (const k of plan.kernels) {
    const line = (k.options as { suiteAptLine?: string }).suiteAptLine;
    if (line && !lines.includes(line)) lines.push(line);
  }
  return { lines, repositories, preferences };
}

export function describeSync(r: SyncReport): string[] {
  const lines: string[] = [];
  const built = r.decisions.filter((d) => d.due).length;
  if (!r.changed) lines.push(`nothing to do: ${r.decisions.length} image${r.decisions.length === 1 ? "" : "s"} up to date${r.bootloaders ? ", bootloaders current" : ""}`);
  else lines.push(`synced: ${built} built and published, ${r.decisions.length - built} up to date${r.bootloaders?.products.some((p) => p.isNew) ? ", bootloaders updated" : ""}${r.reaped?.reaped.length ? `, ${r.reaped.reaped.length} expired files deleted` : ""}`);
  return lines;
}

