/**
 * The `customize` job (docs/architecture.md#customize-and-debug-sessions): an SSH session into a copy of an image, then a
 * new image from what the operator left.
 *
 *  1. fetching_image: the image's manifest and artifacts are downloaded, each md5-checked;
 *  2. the root: the squashfs mounted read-only under a writable overlay, so the session starts
 *     in seconds whatever the image's size and the source stays untouched; the service's site
 *     CAs are added (stages/site-ca.ts) before the operator logs in, as IMS copies its CA;
 *  3. waiting_on_user: the session (job-session.ts), jailed or not, until `complete`/`failed`,
 *     the end-session API call, or the timeout;
 *  4. packaging_artifacts: the seal stage, a new squashfs and package manifest, the kernel and
 *     initrd of each flavor (carried over byte for byte, or rebuilt by the kernel stage when the
 *     session touched what goes into them), the attest step as a build runs it (SBOMs of the new
 *     root, provenance naming the source image, SHA256SUMS signed with the service's --sign-key;
 *     docs/attest.md#customized-images), boot verification when the service verifies always,
 *     then a new image record with the package diff. The source record is never changed.
 *
 * Everything is mounted under a work dir of the cache (host/workdir.ts), so a worker killed
 * mid-session leaves nothing the next start's sweep does not find.
 */
import { copyFile, mkdir, readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { bootParams, ARTIFACT_KINDS } from "../artifacts/types.js";
import { attestOut } from "../attest/attest.js";
import type { DebPackage } from "../attest/debian.js";
import { SERVICE_BUILDER_ID, type SourceImage } from "../attest/provenance.js";
import { spdxFlavorPackages, type SpdxDocument } from "../attest/sbom-spdx.js";
import type { BuildResult, ResultArtifact } from "../artifacts/result.js";
import { CacheStore } from "../cache/store.js";
import { MAX_MANIFEST_BYTES, parseS3Path, readAll, ROOTFS_TYPE, type ImageManifest } from "../catalog/objects.js";
import type { ImageRecord } from "../catalog/records.js";
import { placeStageOutputs, writeBootParams, writeOutDocuments } from "../engine/out-dir.js";
import { runArtifactStage, runLayerStage, type StageRunOptions } from "../engine/run-stage.js";
import { capture } from "../host/exec.js";
import { mountImageFile, mountOverlay } from "../host/mount.js";
import { Scope } from "../host/scope.js";
import { createWorkDir } from "../host/workdir.js";
import { kernel } from "../stages/kernel.js";
import { factsOf } from "../stages/stage.js";
import { manifest } from "../stages/manifest.js";
import { seal } from "../stages/seal.js";
import { siteCa } from "../stages/site-ca.js";
import { squashfs } from "../stages/squashfs.js";
import { verifyOut } from "../verify/verify-out.js";
import { KILN_VERSION } from "../version.js";
import { downloadObject } from "./download.js";
import { jobError } from "./job-error.js";
import { runJobSession } from "./job-session.js";
import { diffPackages, formatPackageDiff, parsePackageList } from "./package-diff.js";
import { publishImage } from "./publish.js";
import type { JobContext } from "./runner.js";

/** What each per-flavor artifact of a source image is to the job, by its media type. */
const FLAVOR_ROLE_OF_TYPE: ReadonlyMap<string, "kernel" | "initrd" | "params"> = new Map([
  [ARTIFACT_KINDS.kernel.type, "kernel"],
  [ARTIFACT_KINDS.initrd.type, "initrd"],
  [ARTIFACT_KINDS.bootParams.type, "params"],
]);

/**
 * What goes into a flavor's kernel and initramfs, besides the kernel layer itself: a session that
 * changed any of these gets its initramfs rebuilt. Paths relative to the root (merged /usr: /lib
 * is usr/lib, both are listed for roots that are not).
 */
export const INITRAMFS_INPUTS = [
  "boot",
  "lib/modules",
  "usr/lib/modules",
  "lib/firmware",
  "usr/lib/firmware",
  "lib/modprobe.d",
  "usr/lib/modprobe.d",
  "etc/modprobe.d",
  "etc/modules",
  "etc/initramfs-tools",
  "usr/share/initramfs-tools",
];

interface SourceFlavor {
  flavor: string;
  kernel?: string;
  initrd?: string;
  params?: string;
}

export async function runCustomizeJob(ctx: JobContext): Promise<void> {
  const { job, catalog, log } = ctx;
  const started = new Date();
  await ctx.setStatus("fetching_image");
  const image = await catalog.get("images", job.artifact_id);
  if (!image) throw jobError(`image ${job.artifact_id} no longer exists (deleted after the job was created)`);
  if (!image.link) throw jobError(`image ${image.id} has no link: its artifacts were never uploaded, so there is nothing to customize`);
  const container = job.ssh_containers[0] ?? { name: "customize", jail: false };

  await using scope = new Scope();
  const work = scope.use(await createWorkDir(ctx.cacheDir, log));
  const aptArchives = new CacheStore(ctx.cacheDir).aptArchives;
  const stageOpts = (name: string, outputs: string): StageRunOptions => ({ name, log, signal: ctx.signal, workDir: work.path, outputs, aptArchives });
  const source = await fetchImage(ctx, image, path.join(work.path, "source"));

  const sourceRoot = scope.use(await mountImageFile(source.rootfs.file, path.join(work.path, "mnt", "source"), { fstype: "squashfs", log, workDir: work.path }));
  const upper = path.join(work.path, "upper");
  const root = scope.use(await mountOverlay(path.join(work.path, "mnt", "root"), { lower: [sourceRoot.path], upper, work: path.join(work.path, "ovl", "root") }, { log, workDir: work.path }));
  if (ctx.siteCas.length > 0) await runLayerStage(siteCa, { certificates: ctx.siteCas }, root.path, upper, stageOpts("site-ca", path.join(work.path, "scratch")));

  const marker = await runJobSession(ctx, container.jail ? { mode: "jail", root: root.path } : { mode: "plain", image: root.path }, work.path);
  if (marker === "failed") throw jobError("the session ended with `failed`: no image was made (the source image is unchanged)");

  await ctx.setStatus("packaging_artifacts");
  await runLayerStage(seal, {}, root.path, upper, stageOpts("seal", path.join(work.path, "scratch")));
  await root.release(); // the upper dir becomes a read-only layer of the views below
  const touched = await changedInitramfsInputs(upper);
  const view = scope.use(await mountOverlay(path.join(work.path, "mnt", "new"), { lower: [upper, sourceRoot.path] }, { log, workDir: work.path }));

  const out = path.join(work.path, "out");
  await runArtifactStage(squashfs, { compression: "zstd" }, view.path, stageOpts("squashfs", out));
  await runArtifactStage(manifest, {}, view.path, stageOpts("manifest", out));
  // out/ as a build assembles it (engine/out-dir.ts): the stages wrote straight into it.
  const artifacts: ResultArtifact[] = [...(await placeStageOutputs(squashfs, out, out)), ...(await placeStageOutputs(manifest, out, out))];

  if (touched.length > 0) log.line(`the session changed what goes into the initramfs (${touched.slice(0, 5).join(", ")}${touched.length > 5 ? ", …" : ""}): rebuilding each flavor's kernel and initrd`);
  const flavors: Array<{ flavor: string; kpackage: string; kernel_version: string }> = [];
  // The layers of the flavors rebuilt here, for the SBOMs; a flavor carried over has none here,
  // and its packages are those the source image's SBOM lists for it.
  const flavorLayers: Array<{ flavor: string; lower: string[] }> = [];
  const carried: Array<{ flavor: string; packages: DebPackage[] }> = [];
  for (const f of source.flavors) {
    if (!f.kernel || !f.initrd) continue;
    const dir = path.join(out, f.flavor);
    await mkdir(dir, { recursive: true });
    const known = image.kiln?.flavors.find((k) => k.flavor === f.flavor);
    let version = known?.kernel_version ?? "";
    if (touched.length > 0 && known?.kpackage) {
      await using kscope = new Scope();
      const kupper = path.join(work.path, "kernel", f.flavor, "upper");
      const m = kscope.use(
        await mountOverlay(path.join(work.path, "mnt", `kernel-${f.flavor}`), { lower: [upper, sourceRoot.path], upper: kupper, work: path.join(work.path, "kernel", f.flavor, "ovl") }, { log, workDir: work.path }),
      );
      const facts = await runLayerStage(kernel, { flavor: f.flavor, package: known.kpackage }, m.path, kupper, stageOpts(`kernel:${f.flavor}`, dir));
      version = factsOf(kernel, facts).kernelVersion;
      flavorLayers.push({ flavor: f.flavor, lower: [kupper, upper, sourceRoot.path] });
    } else {
      if (touched.length > 0) log.line(`warning: flavor ${f.flavor}: the source image does not say which kernel package it came from; its kernel and initrd are carried over unchanged`);
      await copyFile(f.kernel, path.join(dir, "boot-kernel"));
      await copyFile(f.initrd, path.join(dir, "boot-initrd"));
      const packages = source.spdx && spdxFlavorPackages(source.spdx, f.flavor);
      if (packages) carried.push({ flavor: f.flavor, packages });
      else log.line(`warning: flavor ${f.flavor}: the source image's SBOM does not list it${source.spdx ? "" : " (it has none)"}, so the new SBOMs name no packages of it`);
    }
    const extra = { flavor: f.flavor, ...(known?.kpackage ? { kpackage: known.kpackage } : {}), ...(version ? { kernelVersion: version } : {}) };
    artifacts.push(...(await placeStageOutputs(kernel, dir, out, { flavor: extra })));
    artifacts.push(await writeBootParams(out, extra, f.params ? await readFile(f.params) : bootParams([]) + "\n"));
    flavors.push({ flavor: f.flavor, kpackage: known?.kpackage ?? "", kernel_version: version });
  }

  const before = parsePackageList(await capture(["dpkg-query", `--admindir=${path.join(sourceRoot.path, "var/lib/dpkg")}`, "--show"]).catch(() => ""));
  const after = parsePackageList(await readFile(path.join(out, "squashfs.manifest"), "utf8"));
  const diff = diffPackages(before, after);
  const lines = formatPackageDiff(diff);
  log.line(`package changes: ${lines.length === 0 ? "none" : `\n  ${lines.join("\n  ")}`}`);

  await mkdir(path.join(out, "logs"), { recursive: true });
  const from: SourceImage = { id: image.id, name: image.name, rootfs: { path: source.rootfs.path, sha256: source.rootfs.sha256 }, ...(image.kiln?.recipe ? { recipe: image.kiln.recipe } : {}) };
  // No cacheDir: the layers are this job's own folders, so kept SBOMs would never be used again.
  artifacts.push(...(await attestOut({
    out, made: { source: from }, stages: [], artifacts, emit: (e) => log.event(e), workDir: work.path, aptArchives, startedOn: started,
    signKey: ctx.signKey, builderId: SERVICE_BUILDER_ID, layers: { root: [upper, sourceRoot.path], flavors: flavorLayers }, carried,
  })));

  const created = new Date();
  const result: BuildResult = {
    // The recipe the source was built from (provenance.json names it), when its record says.
    recipe: image.kiln?.recipe ?? { name: job.image_root_archive_name, sha256: "" },
    image: { arch: await capture(["dpkg", `--admindir=${path.join(view.path, "var/lib/dpkg")}`, "--print-architecture"]).catch(() => "") },
    stages: [],
    artifacts,
    verify: [],
    kiln: { version: KILN_VERSION, created: created.toISOString(), seconds: 0, unchangedImport: false },
  };
  await writeOutDocuments(out, result, created);
  if (ctx.verify === "always" && flavors.length > 0) {
    const verified = await verifyOut(out, { signal: ctx.signal, log, workDir: work.path });
    const failed = verified.filter((v) => !v.ok);
    if (failed.length > 0) throw jobError(`boot verification of the customized image failed: ${failed.map((v) => `${v.flavor}: ${v.reason ?? "did not reach userspace"}`).join("; ")}`);
  }

  const kiln = { job_id: job.id, source_image_id: image.id, flavors, package_diff: diff, label: "candidate", ...(image.kiln?.recipe ? { recipe: image.kiln.recipe } : {}) };
  const made = await publishImage(catalog, ctx.store, { outDir: out, name: job.image_root_archive_name, arch: image.arch, jobId: job.id, kiln }, log);
  await ctx.setResult(made.id);
}

/**
 * Downloads the image's manifest and its rootfs, kernels, initrds and boot parameters (md5-checked),
 * and its SPDX SBOM when it has one: bound to the image by the sha256 its record keeps, when it keeps one.
 */
async function fetchImage(
  ctx: JobContext,
  image: ImageRecord,
  dir: string,
): Promise<{ rootfs: { file: string; path: string; sha256: string }; flavors: SourceFlavor[]; spdx?: SpdxDocument }> {
  const where = parseS3Path(image.link!.path);
  if (!where) throw jobError(`image ${image.id}: its link ${image.link!.path} is not an s3://bucket/key path`);
  let manifest: ImageManifest;
  try {
    manifest = JSON.parse((await readAll(await ctx.store.get(where.bucket, where.key), MAX_MANIFEST_BYTES)).toString("utf8")) as ImageManifest;
  } catch (e) {
    throw jobError(`image ${image.id}: cannot read its manifest ${image.link!.path}: ${(e as Error).message}`);
  }
  await mkdir(dir, { recursive: true });
  const fetch = async (a: ImageManifest["artifacts"][number], name: string) => {
    const file = path.join(dir, name);
    const got = await downloadObject(ctx.store, a.link.path, file, { what: `image ${image.id}: ${a.type}`, signal: ctx.signal, expectMd5: a.md5 });
    ctx.log.line(`fetched ${a.link.path} (${got.size} bytes, md5 ${got.md5})`);
    return { file, sha256: got.sha256 };
  };
  const rootfs = manifest.artifacts.find((a) => typeof a.type === "string" && a.type.startsWith(ROOTFS_TYPE));
  if (!rootfs) throw jobError(`image ${image.id}: its manifest lists no rootfs (${ROOTFS_TYPE})`);
  const flavors = new Map<string, SourceFlavor>();
  for (const a of manifest.artifacts) {
    const role = FLAVOR_ROLE_OF_TYPE.get(a.type);
    if (!role) continue;
    const flavor = typeof a.flavor === "string" && /^[a-z0-9][a-z0-9.-]*$/.test(a.flavor) ? a.flavor : "default";
    const f = flavors.get(flavor) ?? { flavor };
    flavors.set(flavor, f);
    f[role] = (await fetch(a, `${flavor}.${role}`)).file;
  }
  const sbom = manifest.artifacts.find((a) => a.type === ARTIFACT_KINDS.sbomSpdx.type);
  let spdx: SpdxDocument | undefined;
  if (sbom) {
    const got = await fetch(sbom, "sbom.spdx.json");
    const want = image.kiln?.artifact_sha256?.[ARTIFACT_KINDS.sbomSpdx.name];
    if (want !== undefined && want !== got.sha256) throw jobError(`image ${image.id}: its stored ${ARTIFACT_KINDS.sbomSpdx.name} has sha256 ${got.sha256}, but its record says ${want}: the store holds another file`);
    try {
      spdx = JSON.parse(await readFile(got.file, "utf8")) as SpdxDocument;
    } catch (e) {
      ctx.log.line(`warning: image ${image.id}: its ${ARTIFACT_KINDS.sbomSpdx.name} is not JSON (${(e as Error).message})`);
    }
  }
  return { rootfs: { ...(await fetch(rootfs, "rootfs.squashfs")), path: rootfs.link.path }, flavors: [...flavors.values()], ...(spdx ? { spdx } : {}) };
}

/** Paths under INITRAMFS_INPUTS that the overlay's upper dir holds: what the session added, changed or removed there. */
export async function changedInitramfsInputs(upper: string): Promise<string[]> {
  const found: string[] = [];
  for (const rel of INITRAMFS_INPUTS) {
    const entries = await readdir(path.join(upper, rel), { recursive: true }).catch((e: NodeJS.ErrnoException) => (e.code === "ENOTDIR" ? [""] : []));
    for (const e of entries) found.push(e === "" ? rel : `${rel}/${e}`);
  }
  return found;
}
