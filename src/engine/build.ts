/**
 * The build engine: runs a plan. For each stage it reuses the cached entry with the same key or
 * builds it — layer stages in an overlay over the layers below, artifact stages against a
 * read-only view of the sealed root — then assembles out/ (artifacts, boot-params,
 * manifest.json, result.json) and, when asked, boot-verifies it. Stages run side by side as
 * soon as the stages they are built on are done, within --jobs (scheduler.ts).
 *
 * The CLI runs this directly; the service runs the same function in its workers.
 */
import { mkdir, readdir, readFile, rm, stat } from "node:fs/promises";
import path from "node:path";
import { KilnError } from "../errors.js";
import { bootParams } from "../artifacts/types.js";
import { attestOut } from "../attest/attest.js";
import type { BuildResult, ResultArtifact, ResultStage } from "../artifacts/result.js";
import { explainMiss as explainKeyChange, fileDigests, sameBinding, type Binding } from "../cache/key.js";
import { CacheStore, type Entry, type PendingEntry } from "../cache/store.js";
import { readHostSources } from "../host/apt-sources.js";
import { moveAptLists, openChroot, type ChrootSession } from "../host/chroot.js";
import { capture, exec, nullLog } from "../host/exec.js";
import { mountOverlay } from "../host/mount.js";
import { Scope } from "../host/scope.js";
import { sweepDeadBuilds } from "../host/sweep.js";
import { toolVersions } from "../host/tools.js";
import { createWorkDir } from "../host/workdir.js";
import { kernelCmdline, planBuild, toolsFor, type Plan, type PlanHost, type PlannedStage } from "../plan/plan.js";
import { loadRecipe, type LoadedRecipe } from "../recipe/load.js";
import { ARTIFACT_STAGES, LAYER_STAGES, STAGES, stageOf } from "../stages/index.js";
import { kernel } from "../stages/kernel.js";
import { clampTimes } from "../stages/reproducible.js";
import { checkedOptions, factsOf, type StageContext } from "../stages/stage.js";
import { BootResultCache } from "../verify/boot-cache.js";
import { verifyOut, type VerifyResult } from "../verify/verify-out.js";
import type { EventSink } from "./events.js";
import { OutputDigests, placeStageOutputs, prepareOutDir, writeBootParams, writeOutDocuments } from "./out-dir.js";
import { defaultJobs, hostCapacity, runTasks, stageDependencies, type RunInfo } from "./scheduler.js";
import { openStageLog } from "./stage-log.js";
import { KILN_VERSION } from "../version.js";
import { parseDpkgStatus, readInRoot } from "../attest/debian.js";
import { mergeIndexes, readAptIndex, type AptIndex } from "../lock/apt-index.js";
import { checkLockOffered, lockAptLines } from "../lock/lock-check.js";
import { aptPreferences, checkLockedBase, flavorPackages, readLock, type KilnLock } from "../lock/lock.js";
import { makeLock } from "../lock/make.js";

export interface BuildOptions {
  recipeFile: string;
  outDir: string;
  cacheDir: string;
  /** Rebuild every stage, ignoring cached entries. */
  noCache?: boolean;
  /** Rebuild from this stage on (a stage name from the plan). */
  from?: string;
  /** Boot-verify after building: true/false override the recipe's `verify`. */
  verify?: boolean;
  /** Boot even when a passing boot of the same bytes is cached. */
  reverify?: boolean;
  /** Site CA certificates (PEM files) added to the root before the seal (the service's --site-ca). */
  siteCas?: readonly string[];
  /**
   * Called when a layer stage fails, with its root still mounted as the stage left it (a debug
   * shell, docs/customize.md). "retry" runs the stage again on that root as it is now; "fail" fails the
   * build. A layer that was retried holds hand-made changes: it and everything built on it in
   * this run are dropped from the cache once the build ends.
   */
  /**
   * Build only the root's layer stages: no kernels, artifacts, out/ files or boot. The result's
   * `stages` are the root's layers, bottom first (the build environment of plain sessions).
   */
  rootOnly?: boolean;
  /** At most this many stages (and boot vCPUs) at once; default from the host (scheduler.ts defaultJobs). */
  jobs?: number;
  onStageFailure?: (failure: { stage: string; root: string; workDir: string; error: unknown }) => Promise<"retry" | "fail">;
  /** Sign out/SHA256SUMS with this GnuPG key (a file or a key id; docs/attest.md). */
  signKey?: string;
  /** The sign key's passphrase, in a file. */
  passphraseFile?: string;
  /** The SLSA builder id provenance.json names (docs/attest.md); `kiln build`'s by default. */
  builderId?: string;
  /** Install exactly the versions of this kiln.lock (docs/lock.md). */
  lockFile?: string;
  signal: AbortSignal;
  emit: EventSink;
}

/** Loads the recipe and plans it against this host (tool versions, apt sources, and what each stage's hostFacts looks up). */
export async function prepareBuild(recipeFile: string, siteCaFiles: readonly string[] = [], lock?: string): Promise<{ loaded: LoadedRecipe; plan: Plan }> {
  const loaded = await loadRecipe(recipeFile);
  const r = loaded.recipe;
  const siteCas: Record<string, string> = {};
  for (const f of siteCaFiles) siteCas[f] = `sha256:${(await fileDigests(f)).sha256}`;
  const host: PlanHost = { hostSources: await readHostSources(), siteCas, ...(lock !== undefined ? { lock } : {}) };
  for (const s of STAGES) Object.assign(host, await s.hostFacts?.(r));
  const plan = planBuild(loaded, { ...host, tools: await toolVersions(toolsFor(loaded, host)) });
  return { loaded, plan };
}

export async function build(opts: BuildOptions): Promise<BuildResult> {
  const started = Date.now();
  const { emit, signal } = opts;
  if (process.getuid?.() !== 0) {
    throw new KilnError("NOT_ROOT", "kiln build needs root: it mounts overlays, runs chroot and mmdebstrap", { hint: "run it with sudo" });
  }
  // A bad lock fails before anything else (exit 2 naming the field); its digest goes into every key.
  const locked = opts.lockFile ? { ...(await readLock(opts.lockFile)), file: opts.lockFile } : undefined;
  const { loaded, plan } = await prepareBuild(opts.recipeFile, opts.siteCas, locked && `sha256:${locked.sha256}`);
  if (locked) checkLockedBase(locked.lock, locked.file, recipeBaseImage(loaded));
  const store = new CacheStore(opts.cacheDir);
  const out = path.resolve(opts.outDir);
  const noteLog = { line: (message: string) => emit({ type: "note", message }) };
  for (const r of await sweepDeadBuilds(opts.cacheDir, noteLog)) {
    emit({ type: "note", message: `cleaned up after a killed build: ${r.processes} processes, ${r.mounts} mounts, ${r.loops} loop devices` });
  }
  await removeSeededIsos(out);
  await prepareOutDir(out);
  const allStages = [...plan.root, ...plan.kernels, ...plan.artifacts];
  const fromIndex = opts.from ? allStages.findIndex((s) => s.name === opts.from) : -1;
  if (opts.from && fromIndex < 0) {
    throw new KilnError("USAGE", `--from ${opts.from}: no such stage in this plan; stages: ${allStages.map((s) => s.name).join(", ")}`);
  }
  // --from forces that stage and every stage that depends on it: the rest of the root chain, and all kernels and artifacts.
  const forced = new Set<string>(
    opts.noCache ? allStages.map((s) => s.key) : fromIndex >= 0 ? allStages.slice(fromIndex).map((s) => s.key) : [],
  );
  if (fromIndex >= 0 && fromIndex < plan.root.length) for (const s of [...plan.kernels, ...plan.artifacts]) forced.add(s.key);

  await using scope = new Scope();
  const work = scope.use(await createWorkDir(opts.cacheDir, nullLog));
  // Shared with other builds, exclusive to prune: no entry this build reads goes away under it.
  scope.use(await store.lock("shared", { signal, workDir: work.path, onWait: () => emit({ type: "note", message: "waiting for kiln cache prune to finish" }) }));
  if (locked) await checkLockBeforeBuild(locked, plan, { out, emit, workDir: work.path, signal, env: proxyEnv(loaded) });
  const rootPins = locked && aptPreferences(locked.lock.root);
  const pinsOf = (s: PlannedStage) => locked && (s.flavor !== undefined ? aptPreferences(flavorPackages(locked.lock, s.flavor)) : rootPins);
  const cachedNow = await cachedStages(store, allStages);
  const jobs = opts.jobs ?? defaultJobs(hostCapacity());
  emit({
    type: "plan",
    recipe: plan.recipe.name,
    stages: allStages.map((s) => ({ name: s.name, key: s.key, cached: !forced.has(s.key) && cachedNow.has(s.key) })),
    jobs,
  });

  /** The generation of each entry this build uses, by key: resolved once, used to the end. */
  const used = new Map<string, Entry>();
  /** Keys of layers a debug session changed by hand (onStageFailure → retry). */
  const handMade = new Set<string>();

  const stageByKey = new Map(allStages.map((s) => [s.key, s]));
  /** The trees a stage is mounted on, top first: its parent's and each one's below it. */
  const lowerOf = (s: PlannedStage): string[] => {
    const lower: string[] = [];
    for (let k = s.record.parent; k !== null; k = stageByKey.get(k)?.record.parent ?? null) lower.push(used.get(k)!.tree);
    return lower;
  };

  const runStage = async (s: PlannedStage, signal: AbortSignal, info: RunInfo): Promise<ResultStage> => {
    if (signal.aborted) throw new KilnError("CANCELLED", "build cancelled");
    const t0 = Date.now();
    const binding = bindingOf(s, (key) => used.get(key)?.meta.generation);
    if (!binding) throw new Error(`engine: ${s.name} runs before an entry it is built on`);
    const found = forced.has(s.key) ? undefined : await store.resolve(s.section, s.key);
    const cachedMeta = found && sameBinding(found.record, binding) ? found : undefined;
    const summary = (s.section === "layers" ? LAYER_STAGES[s.kind] : ARTIFACT_STAGES[s.kind])!.summary;
    emit({ type: "stage-start", name: s.name, cached: cachedMeta !== undefined, summary, at: new Date().toISOString(), running: info.running() });
    let entry = cachedMeta;
    if (!entry) {
      const log = openStageLog(out, s.name, emit);
      try {
        await explainMiss(store, s, binding, found, log);
        entry = await buildEntry(s, lowerOf(s), binding, log, signal);
      } catch (e) {
        throw stageError(s.name, e, log.relPath);
      } finally {
        await log.close();
      }
    }
    used.set(s.key, entry);
    const seconds = round1((Date.now() - t0) / 1000);
    emit({ type: "stage-end", name: s.name, key: s.key, cached: cachedMeta !== undefined, seconds, at: new Date().toISOString(), ranWith: info.ranWith() });
    return { name: s.name, key: s.key, cached: cachedMeta !== undefined, seconds };
  };

  /**
   * The apt indexes a layer's chroot starts from (its nearest ancestor's that kept some) and,
   * when a layer is built on it, where it keeps its own: the children's `apt update` then
   * fetches only the release files and the indexes that changed (docs/cache.md#apt-lists).
   */
  const aptListsFor = async (s: PlannedStage, pending: PendingEntry): Promise<{ seed?: string; keep?: string }> => {
    let seed: string | undefined;
    for (let k = s.record.parent; k !== null && !seed; k = stageByKey.get(k)?.record.parent ?? null) {
      const lists = used.get(k)!.aptLists;
      if (await stat(lists).then((st) => st.isDirectory(), () => false)) seed = lists;
    }
    const hasChildLayer = allStages.some((c) => c.section === "layers" && c.record.parent === s.key);
    return { seed, keep: hasChildLayer ? pending.aptLists : undefined };
  };

  const buildEntry = async (s: PlannedStage, lower: string[], binding: Binding, log: ReturnType<typeof openStageLog>, signal: AbortSignal): Promise<Entry> => {
    const t0 = Date.now();
    const pending = await store.begin(s.section, s.key, work.path);
    await using stageScope = new Scope();
    // Every stage after the base runs with the base's SOURCE_DATE_EPOCH: its chroots and host tools.
    const epoch = buildEpoch();
    const sde: Record<string, string> = epoch === undefined ? {} : { SOURCE_DATE_EPOCH: String(epoch) };
    const ctx: StageContext = {
      name: s.name,
      log,
      signal,
      workDir: work.path,
      outputs: pending.outputs,
      env: { ...proxyEnv(loaded), ...sde },
      facts: {},
      exec: (argv, o = {}) => exec(argv, { ...o, env: { ...sde, ...o.env }, log, signal, workDir: work.path }),
      progress: (fraction) => emit({ type: "progress", name: s.name, fraction }),
      ...(epoch === undefined ? {} : { epoch, ids: { key: s.key, epoch } }),
    };
    const mountName = s.name.replace(/[^a-z0-9-]/gi, "-");
    if (s.section === "layers") {
      const stage = LAYER_STAGES[s.kind]!;
      const options = checkedOptions(stage, s.options);
      let root = pending.tree;
      if (!stage.base) {
        const m = await mountOverlay(
          path.join(work.path, "mnt", mountName),
          { lower, upper: pending.tree, work: path.join(work.path, "ovl", mountName) },
          { log, workDir: work.path },
        );
        stageScope.use(m);
        root = m.path;
      }
      let session: ChrootSession | undefined;
      const aptPins = pinsOf(s);
      // kiln.lock's suites and .deb digests: what apt's lists said when the stage ran (docs/lock.md).
      const recordAptLists = async (listsDir: string) => {
        const installed = parseDpkgStatus((await readInRoot(root, "/var/lib/dpkg/status")) ?? "");
        ctx.facts.aptIndex = mergeIndexes([ctx.facts.aptIndex as AptIndex | undefined, await readAptIndex(listsDir, installed)]);
      };
      const layerCtx = {
        ...ctx,
        root,
        upper: pending.tree,
        aptArchives: store.aptArchives,
        hostSources: await readHostSources(),
        ...(aptPins !== undefined ? { aptPins } : {}),
        recordAptLists,
        keepAptLists: async (listsDir: string) => {
          const { keep } = await aptListsFor(s, pending);
          if (keep) await moveAptLists(listsDir, keep);
        },
        chroot: async () =>
          (session ??= stageScope.use(
            await openChroot(root, {
              log, signal, workDir: work.path, aptArchives: store.aptArchives, env: ctx.env, aptLists: await aptListsFor(s, pending),
              ...(aptPins !== undefined ? { aptPins } : {}), onAptLists: recordAptLists,
            }),
          )),
      };
      for (;;) {
        try {
          await stage.run(layerCtx, options);
          break;
        } catch (e) {
          if (!opts.onStageFailure || signal.aborted) throw e;
          const decision = await opts.onStageFailure({ stage: s.name, root, workDir: work.path, error: stageError(s.name, e, log.relPath) });
          if (decision === "fail") throw e;
          handMade.add(s.key);
          log.line(`${s.name}: running again on the root as the debug session left it`);
        }
      }
    } else {
      const stage = ARTIFACT_STAGES[s.kind]!;
      const options = checkedOptions(stage, s.options);
      let root = "";
      if (stage.needsRoot) {
        const m = await mountOverlay(path.join(work.path, "mnt", mountName), { lower }, { log, workDir: work.path });
        stageScope.use(m);
        root = m.path;
      }
      const inputs = Object.fromEntries(Object.entries(s.uses ?? {}).map(([n, u]) => [n, path.join(used.get(u.key)!.outputs, u.file)]));
      await stage.run({ ...ctx, root, inputs }, options);
    }
    await stageScope.release(); // unmount before the layer moves into the cache
    // What this layer wrote states the epoch, not the time of the build (docs/reproducible.md).
    const clampTo = epoch ?? (typeof ctx.facts.epoch === "number" ? ctx.facts.epoch : undefined);
    if (s.section === "layers" && clampTo !== undefined) log.line(`clamped the times of ${await clampTimes(pending.tree, clampTo)} entries to SOURCE_DATE_EPOCH ${clampTo}`);
    const stage = stageOf(s.kind);
    if (stage.facts) factsOf(stage, ctx.facts); // what out/ and the catalog read back must be there
    ctx.facts.files = await digestOutputs(pending.outputs);
    // Entries built on a hand-fixed layer are not what their keys say: dropped when the build ends.
    if (handMade.size > 0) scope.defer(() => store.remove(s.section, s.key, nullLog));
    // A forced stage (--from, --no-cache) replaces the entry of the same key: its point is a fresh build (newer packages).
    return store.commit(pending, { ...s.record, ...binding }, { name: s.name, kind: s.kind, seconds: round1((Date.now() - t0) / 1000), facts: ctx.facts }, log, { replace: forced.has(s.key) });
  };

  /** The build's SOURCE_DATE_EPOCH: a fact of its base stage (bootstrap, import), once that is built or found. */
  const buildEpoch = (): number | undefined => {
    const base = plan.root[0];
    const e = base && used.get(base.key)?.meta.facts.epoch;
    return typeof e === "number" ? e : undefined;
  };

  await mkdir(store.aptArchives, { recursive: true });
  /** Runs stages side by side, each once the stages it is built on are done; results in plan order. */
  const runAll = (list: PlannedStage[]) => {
    const deps = stageDependencies(list);
    return runTasks(list.map((s) => ({ id: s.name, after: deps.get(s.name), run: (sig, info) => runStage(s, sig, info) })), { jobs }, signal);
  };
  const stages: ResultStage[] = await runAll(opts.rootOnly ? plan.root : allStages);
  if (opts.rootOnly) {
    const result: BuildResult = {
      recipe: { name: plan.recipe.name, sha256: plan.recipe.sha256 },
      image: { arch: await capture(["dpkg", "--print-architecture"]) },
      stages,
      artifacts: [],
      verify: [],
      kiln: { version: KILN_VERSION, created: new Date().toISOString(), seconds: round1((Date.now() - started) / 1000), unchangedImport: false },
    };
    await scope.release();
    emit({ type: "done", result, out });
    return result;
  }

  // Assemble out/: each stage's files as its outputs declare, and a boot-params per flavor.
  const wants = new Set(loaded.recipe.outputs);
  const flavorFacts = (flavor: string) => {
    const k = plan.kernels.find((x) => x.flavor === flavor)!;
    return { flavor, kpackage: k.package, kernelVersion: factsOf(kernel, used.get(k.key)!.meta.facts).kernelVersion };
  };
  const artifacts: ResultArtifact[] = [];
  for (const s of [...plan.artifacts, ...plan.kernels]) {
    const entry = used.get(s.key)!;
    const flavor = s.flavor === undefined ? undefined : flavorFacts(s.flavor);
    artifacts.push(...(await placeStageOutputs(stageOf(s.kind), entry.outputs, out, { wants, flavor, digests: OutputDigests.parse(entry.meta.facts.files) })));
    if (s.section === "layers" && flavor) artifacts.push(await writeBootParams(out, flavor, bootParams(kernelCmdline(loaded.recipe)) + "\n"));
  }
  const chain = plan.root.map((s) => used.get(s.key)!.tree).reverse(); // the sealed root's trees, top first
  const arch = await capture(["dpkg", "--print-architecture"]);
  artifacts.push(await writeLock({ out, loaded, plan, used, chain, arch, locked, workDir: work.path, aptArchives: store.aptArchives, emit }));
  // SBOMs, provenance and SHA256SUMS over every artifact above (docs/attest.md).
  artifacts.push(...(await attestOut({
    out, made: { loaded }, stages, artifacts, emit, workDir: work.path, cacheDir: opts.cacheDir, aptArchives: store.aptArchives, startedOn: new Date(started), epoch: buildEpoch(),
    signKey: opts.signKey, passphraseFile: opts.passphraseFile, builderId: opts.builderId,
    ...(locked ? { lock: { file: locked.file, sha256: locked.sha256 } } : {}),
    layers: { root: [...chain], flavors: plan.kernels.map((k) => ({ flavor: k.flavor!, lower: [used.get(k.key)!.tree, ...chain] })) },
  })));
  const created = new Date();
  const result: BuildResult = {
    recipe: { name: plan.recipe.name, sha256: plan.recipe.sha256, file: loaded.file },
    ...(locked ? { lock: { file: path.resolve(locked.file), sha256: locked.sha256 } } : {}),
    image: {
      arch,
      ...("debian" in loaded.recipe.base ? { os: "debian", release: loaded.recipe.base.debian } : {}),
    },
    stages,
    artifacts,
    verify: [],
    kiln: { version: KILN_VERSION, created: created.toISOString(), seconds: 0, unchangedImport: plan.unchangedImport },
  };
  result.kiln.seconds = round1((Date.now() - started) / 1000);
  // The IMS manifest states the epoch (when known): the same image gives the same manifest.json.
  const epoch = buildEpoch();
  await writeOutDocuments(out, result, epoch === undefined ? created : new Date(epoch * 1000));

  const wantVerify = opts.verify ?? loaded.recipe.verify === "boot";
  if (wantVerify) {
    if (plan.kernels.length === 0) throw new KilnError("USAGE", "--verify: the recipe has no kernels to boot");
    const log = openStageLog(out, "verify", emit);
    try {
      emit({ type: "stage-start", name: "verify", cached: false, summary: "Boot every flavor under qemu (root over HTTP), and the disk and ISO on BIOS and UEFI", at: new Date().toISOString(), running: [] });
      const t0 = Date.now();
      // Each boot is reported as it ends, beside the boots it ran with; result.verify keeps target order.
      const onBoot = {
        start: (b: { flavor: string; target: string; running: string[] }) => emit({ type: "boot-start", ...b, at: new Date().toISOString() }),
        end: (v: VerifyResult, ranWith: string[]) =>
          emit({ type: "boot", flavor: v.flavor, target: v.target ?? "pxe", ok: v.ok, cached: v.cached === true, seconds: v.seconds, at: new Date().toISOString(), ranWith }),
      };
      result.verify = await verifyOut(out, { signal, log, workDir: work.path, bootCache: new BootResultCache(path.join(opts.cacheDir, "boots")), reverify: opts.reverify, jobs, onBoot });
      const allCached = result.verify.length > 0 && result.verify.every((v) => v.cached === true);
      emit({ type: "stage-end", name: "verify", key: "", cached: allCached, seconds: round1((Date.now() - t0) / 1000), at: new Date().toISOString(), ranWith: [] });
    } finally {
      await log.close();
    }
  }
  await scope.release();
  emit({ type: "done", result, out });
  return result;
}

/** Before any stage runs: do the sources still offer every version of the lock? (exit 2 naming each one that is gone) */
async function checkLockBeforeBuild(
  locked: { lock: KilnLock; file: string },
  plan: Plan,
  o: { out: string; emit: EventSink; workDir: string; signal: AbortSignal; env: Record<string, string> },
): Promise<void> {
  const log = openStageLog(o.out, "lock-check", o.emit);
  try {
    const recipeLines = [
      ...plan.root.flatMap((s) => (s.kind === "bootstrap" ? (s.options as { aptLines: string[] }).aptLines : [])),
      ...plan.kernels.flatMap((k) => (k.options as { suiteAptLine?: string }).suiteAptLine ?? []),
    ];
    await checkLockOffered(locked.lock, locked.file, { aptLines: [...recipeLines, ...lockAptLines(locked.lock)], workDir: o.workDir, log, signal: o.signal, env: o.env });
  } finally {
    await log.close();
  }
}

/** An import's base image as the lock names it: its path from the recipe's folder and its sha256 (hex). */
function recipeBaseImage(loaded: LoadedRecipe): { file: string; sha256: string } | undefined {
  const r = loaded.recipe;
  const digest = "image" in r.base ? loaded.inputs[r.base.image] : undefined;
  return "image" in r.base && digest ? { file: path.relative(loaded.dir, r.base.image), sha256: digest.replace(/^sha256:/, "") } : undefined;
}

/** out/kiln.lock from the sealed root and each flavor, with what their stages' apt lists recorded (src/lock/make.ts). */
async function writeLock(o: {
  out: string;
  loaded: LoadedRecipe;
  plan: Plan;
  used: ReadonlyMap<string, Entry>;
  chain: string[];
  arch: string;
  locked: { lock: KilnLock; file: string } | undefined;
  workDir: string;
  aptArchives: string;
  emit: EventSink;
}): Promise<ResultArtifact> {
  const indexOf = (s: PlannedStage) => o.used.get(s.key)!.meta.facts.aptIndex as AptIndex | undefined;
  const base = recipeBaseImage(o.loaded);
  const log = openStageLog(o.out, "lock", o.emit);
  try {
    const { artifact } = await makeLock({
      out: o.out,
      workDir: o.workDir,
      arch: o.arch,
      root: { lower: o.chain, indexes: o.plan.root.map(indexOf) },
      flavors: o.plan.kernels.map((k) => ({ flavor: k.flavor, lower: [o.used.get(k.key)!.tree, ...o.chain], index: indexOf(k) })),
      ...(base ? { base } : {}),
      aptArchives: o.aptArchives,
      ...(o.locked ? { locked: o.locked } : {}),
      log,
    });
    return artifact;
  } finally {
    await log.close();
  }
}

/**
 * Seeded ISOs (kiln iso --seed) were made from the previous build's ISO: a new build makes them
 * stale, so they go with it. Only files result.json lists are removed (Kiln's rule for out/).
 */
async function removeSeededIsos(out: string): Promise<void> {
  let previous: BuildResult;
  try {
    previous = JSON.parse(await readFile(path.join(out, "result.json"), "utf8")) as BuildResult;
  } catch {
    return;
  }
  for (const a of previous.seeded ?? []) {
    if (typeof a.path === "string" && !a.path.split("/").includes("..") && !path.isAbsolute(a.path)) await rm(path.join(out, a.path), { force: true });
  }
}

interface FileDigest {
  sha256: string;
  md5: string;
  size: number;
}

async function digestOutputs(dir: string): Promise<Record<string, FileDigest>> {
  const files: Record<string, FileDigest> = {};
  for (const name of await readdir(dir).catch(() => [] as string[])) files[name] = await fileDigests(path.join(dir, name));
  return files;
}

/**
 * What a stage's entry must have been built on: the generations of its parent and of the
 * entries whose files it reads, as `generationOf` (this build's resolved entries) gives them.
 * Undefined if one of those has no generation yet.
 */
export function bindingOf(s: Pick<PlannedStage, "record" | "uses">, generationOf: (key: string) => string | undefined): Binding | undefined {
  const parentGeneration = s.record.parent === null ? null : generationOf(s.record.parent);
  if (parentGeneration === undefined) return undefined;
  if (!s.uses) return { parentGeneration };
  const inputGenerations: Record<string, string> = {};
  for (const [name, u] of Object.entries(s.uses)) {
    const g = generationOf(u.key);
    if (g === undefined) return undefined;
    inputGenerations[name] = g;
  }
  return { parentGeneration, inputGenerations };
}

/** Keys of the stages (in plan order) whose cached entry is valid on the entries below it. */
export async function cachedStages(store: CacheStore, stages: readonly PlannedStage[]): Promise<Set<string>> {
  const generations = new Map<string, string>();
  for (const s of stages) {
    const binding = bindingOf(s, (key) => generations.get(key));
    const entry = binding && (await store.resolve(s.section, s.key, { touch: false }));
    if (binding && entry && sameBinding(entry.record, binding)) generations.set(s.key, entry.meta.generation);
  }
  return new Set(generations.keys());
}

/**
 * Writes into the stage log why the cache missed: the entry of this very key was built on a
 * parent since rebuilt, or an older entry of the same stage differs in its record.
 */
async function explainMiss(store: CacheStore, s: PlannedStage, binding: Binding, stale: Entry | undefined, log: { line(t: string): void }): Promise<void> {
  let record = stale?.record;
  if (!record) {
    const prev = await store.latestByName(s.section, s.name);
    record = prev && (await store.keyRecord(s.section, prev.key));
  }
  if (!record) return;
  const why = explainKeyChange(record, { ...s.record, ...binding });
  if (why.length) log.line(`cache miss: ${why.join("; ")}`);
}

function proxyEnv(loaded: LoadedRecipe): Record<string, string> {
  const env: Record<string, string> = {};
  const p = loaded.recipe.proxy;
  const pick = (name: string, fromRecipe: string | undefined) => {
    const v = fromRecipe ?? process.env[name] ?? process.env[name.toUpperCase()];
    if (v) {
      env[name] = v;
      env[name.toUpperCase()] = v;
    }
  };
  pick("http_proxy", p?.http);
  pick("https_proxy", p?.https);
  pick("no_proxy", p?.noProxy);
  return env;
}

function stageError(name: string, e: unknown, logPath: string): unknown {
  if (e instanceof KilnError && e.code === "STAGE_FAILED") {
    return new KilnError("STAGE_FAILED", `stage ${name}: ${e.message} · log: ${logPath}`, { hint: e.hint, cause: e });
  }
  if (e instanceof KilnError) return e;
  return new KilnError("STAGE_FAILED", `stage ${name}: ${(e as Error).message ?? String(e)} · log: ${logPath}`, { cause: e });
}

function round1(n: number): number {
  return Math.round(n * 10) / 10;
}
