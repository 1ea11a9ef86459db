/**
 * Publishing a build's out dir as an IMS image, atomically (ims-python-helper's upload_artifacts;
 * docs/architecture.md#ims-behaviour-kiln-follows):
 *  1. POST-equivalent: an image record with no link (IMS' upload_artifacts does the same);
 *  2. every artifact of out/manifest.json, then every other artifact of a kind with an upload key
 *     (artifacts/types.ts `imsKey`), is uploaded to `boot-images/<image_id>/…` with the
 *     `md5sum` and `x-shasta-ims-*` metadata (and `sha256` from out/result.json: a simplestreams
 *     item needs it, and reading a multi-GB object back to hash it would cost a download), then
 *     checked: size and md5 as the store reports them;
 *     The serial logs of the verify boots go under `<image_id>/logs/` (type SERIAL_LOG_TYPE);
 *  3. manifest.json (version 1.0, s3 links with etags, sorted keys, indent 4 as IMS writes it) is
 *     uploaded and validated like any PATCHed link;
 *  4. only then does the record get its link, with `kiln.size` (the bytes uploaded) and
 *     `kiln.verify` (the boots and their logs' paths), which the console lists images by.
 * If anything fails, the record and every object under `<image_id>/` are removed.
 *
 * Keys: the first kernel flavor uses IMS' keys (`kernel`, `initrd`, `boot_parameters`); further
 * flavors go under `<flavor>/` and carry a `flavor` field, which IMS clients ignore.
 */
import { createHash, randomUUID } from "node:crypto";
import { createReadStream } from "node:fs";
import { readFile, stat } from "node:fs/promises";
import path from "node:path";
import type { BuildResult, ImsManifest } from "../artifacts/result.js";
import { SERIAL_LOG_TYPE, uploadedKindOf } from "../artifacts/types.js";
import type { Catalog } from "../catalog/catalog.js";
import { BOOT_IMAGES_BUCKET, parseS3Path, s3Path, validateImageManifest } from "../catalog/objects.js";
import { imsTime, type Arch, type ImageKiln, type ImageRecord, type ImageVerify } from "../catalog/records.js";
import { KilnError } from "../errors.js";
import type { ObjectStore } from "../store/object-store.js";
import type { JobLog } from "./job-log.js";

export interface PublishInput {
  outDir: string;
  name: string;
  arch: Arch;
  jobId: string;
  metadata?: Record<string, string>;
  /** Kiln's additions to the record (the job, the source image, flavors, package diff). */
  kiln?: ImageKiln;
}

/** JSON with keys sorted at every level, indented 4: Python's json.dump(sort_keys=True, indent=4). */
export function sortedJson(value: unknown): string {
  const sort = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(sort);
    if (v && typeof v === "object") return Object.fromEntries(Object.keys(v).sort().map((k) => [k, sort((v as Record<string, unknown>)[k])]));
    return v;
  };
  return JSON.stringify(sort(value), null, 4);
}

export async function publishImage(catalog: Catalog, store: ObjectStore, input: PublishInput, log: JobLog): Promise<ImageRecord> {
  const local = JSON.parse(await readFile(path.join(input.outDir, "manifest.json"), "utf8")) as ImsManifest;
  const result = JSON.parse(await readFile(path.join(input.outDir, "result.json"), "utf8")) as BuildResult;
  const sha256 = new Map(result.artifacts.map((a) => [a.path, a.sha256]));
  // The IMS artifacts first, in manifest.json's order; then every other artifact of a kind that
  // has an upload key (artifacts/types.ts): the package list a MAAS stream version needs
  // (docs/service.md#maas-boot-source), the tarball, and the attestations (SBOMs, provenance,
  // SHA256SUMS and its signature: docs/attest.md), which IMS clients skip as unknown types.
  const inManifest = new Set(local.artifacts.map((a) => a.link.path));
  const toUpload: ImsManifest["artifacts"] = [
    ...local.artifacts,
    ...result.artifacts
      .filter((a) => !inManifest.has(a.path) && uploadedKindOf(a.type) !== undefined)
      .map((a) => ({ type: a.type, md5: a.md5, link: { type: "file" as const, path: a.path }, ...(a.flavor ? { flavor: a.flavor } : {}) })),
  ];
  const id = randomUUID();
  // The record, which only jobs write, keeps each uploaded file's sha256: the store's copy of the
  // signed set (SHA256SUMS, its signature, the provenance) is bound to this image by it.
  const kiln = input.kiln && { ...input.kiln, artifact_sha256: artifactDigests(toUpload.map((a) => a.link.path), sha256) };
  const image: ImageRecord = { id, created: imsTime(), name: input.name, link: null, arch: input.arch, metadata: input.metadata ?? {}, ...(kiln ? { kiln } : {}) };
  await catalog.insert("images", image);
  log.line(`image ${id} (${input.name}): uploading ${toUpload.length} artifacts to ${store.url} bucket ${BOOT_IMAGES_BUCKET}`);
  const uploaded: string[] = [];
  try {
    const firstFlavor = toUpload.find((a) => a.flavor)?.flavor;
    const artifacts: Array<Record<string, unknown>> = [];
    const verify: ImageVerify[] = [];
    for (const v of result.verify ?? []) {
      // A serial log the boot left (a cached boot made none); its path is verify-out.ts's `logs/verify-….log`.
      const file = SERIAL_LOG.test(v.log) ? path.join(input.outDir, v.log) : undefined;
      const md5 = file ? await fileMd5(file) : undefined;
      if (file && md5) toUpload.push({ type: SERIAL_LOG_TYPE, md5, link: { type: "file", path: v.log }, flavor: v.flavor });
      verify.push({ flavor: v.flavor, ...(v.target ? { target: v.target } : {}), ok: v.ok, seconds: v.seconds, ...(v.cached ? { cached: true } : {}), ...(v.reason ? { reason: v.reason } : {}), log: md5 ? s3Path(BOOT_IMAGES_BUCKET, `${id}/${v.log}`) : null });
    }
    let total = 0;
    for (const a of toUpload) {
      const base = a.type === SERIAL_LOG_TYPE ? a.link.path : uploadedKindOf(a.type)?.imsKey;
      if (!base) continue;
      const key = a.type !== SERIAL_LOG_TYPE && a.flavor && a.flavor !== firstFlavor ? `${id}/${a.flavor}/${base}` : `${id}/${base}`;
      const file = path.join(input.outDir, a.link.path);
      const size = (await stat(file)).size;
      total += size;
      const t0 = Date.now();
      uploaded.push(key);
      const info = await store.put(BOOT_IMAGES_BUCKET, key, createReadStream(file), {
        contentType: a.type,
        size,
        metadata: { md5sum: a.md5, ...(sha256.has(a.link.path) ? { sha256: sha256.get(a.link.path)! } : {}), "x-shasta-ims-image-name": input.name, "x-shasta-ims-image-id": id, "x-shasta-ims-job-id": input.jobId },
      });
      await checkUploaded(store, key, size, a.md5);
      log.line(`uploaded ${key}: ${size} bytes, md5 ${a.md5} in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
      artifacts.push({ link: { etag: info.etag, path: s3Path(BOOT_IMAGES_BUCKET, key), type: "s3" }, md5: a.md5, type: a.type, ...(a.flavor ? { flavor: a.flavor } : {}) });
    }
    const manifest = { artifacts, created: local.created.includes(".") ? local.created : `${local.created}.000000`, version: "1.0" };
    const manifestKey = `${id}/manifest.json`;
    uploaded.push(manifestKey);
    const body = sortedJson(manifest);
    const info = await store.put(BOOT_IMAGES_BUCKET, manifestKey, body, {
      contentType: "application/json",
      size: Buffer.byteLength(body),
      metadata: { md5sum: createHash("md5").update(body).digest("hex"), "x-shasta-ims-image-name": input.name, "x-shasta-ims-image-id": id, "x-shasta-ims-job-id": input.jobId },
    });
    const link = { path: s3Path(BOOT_IMAGES_BUCKET, manifestKey), etag: info.etag, type: "s3" as const };
    await validateImageManifest(store, [], link);
    const linked = await catalog.update("images", id, (doc) => ({ ...doc, link, ...(doc.kiln ? { kiln: { ...doc.kiln, size: total, verify } } : {}) }));
    if (!linked) throw new KilnError("STORE_FAILED", `image ${id} was deleted while its artifacts were uploaded`);
    log.line(`image ${id}: manifest ${link.path}`);
    return linked;
  } catch (e) {
    log.line(`publishing failed (${(e as Error).message}); removing image ${id} and its objects`);
    for (const key of uploaded) await store.delete(BOOT_IMAGES_BUCKET, key).catch(() => {});
    await catalog.remove("images", id).catch(() => {});
    throw e;
  }
}

/**
 * The uploaded files' sha256 from result.json, by out-dir path, sorted. A file result.json does not
 * list (none a Kiln job makes) is left out, and `kiln attest verify` names it as unbound.
 */
function artifactDigests(paths: readonly string[], sha256: ReadonlyMap<string, string>): Record<string, string> {
  return Object.fromEntries([...new Set(paths)].filter((p) => sha256.has(p)).sort().map((p) => [p, sha256.get(p)!]));
}

const SERIAL_LOG = /^logs\/verify-[A-Za-z0-9.-]+\.log$/;

/** md5 of a file, or undefined when there is none. */
async function fileMd5(file: string): Promise<string | undefined> {
  const h = createHash("md5");
  try {
    for await (const c of createReadStream(file)) h.update(c as Buffer);
  } catch {
    return undefined;
  }
  return h.digest("hex");
}

/** The store must hold the object whole: same size, same md5 (its md5sum metadata, and its etag when that is a plain md5). */
async function checkUploaded(store: ObjectStore, key: string, size: number, md5: string): Promise<void> {
  const info = await store.head(BOOT_IMAGES_BUCKET, key);
  const problems: string[] = [];
  if (info.size !== size) problems.push(`size ${info.size}, expected ${size}`);
  if (info.metadata.md5sum !== undefined && info.metadata.md5sum !== md5) problems.push(`md5sum metadata ${info.metadata.md5sum}, expected ${md5}`);
  if (/^[0-9a-f]{32}$/.test(info.etag) && info.etag !== md5) problems.push(`etag ${info.etag} is not the md5 ${md5}`);
  if (problems.length > 0) throw new KilnError("STORE_FAILED", `uploaded ${s3Path(BOOT_IMAGES_BUCKET, key)} does not match the built file: ${problems.join(", ")}`);
}

export { parseS3Path };
