/**
 * The objects IMS records link to, and what IMS does with them (docs/architecture.md#ims-behaviour-kiln-follows):
 *  - links are `s3://<bucket>/<key>`; recipes live in bucket `ims`, images in `boot-images`;
 *  - an image link points at a manifest.json, which IMS validates before the link is set (§2.3);
 *  - soft delete moves every object to `deleted/<key>` in its bucket (copy, then delete) and, for
 *    an image, writes `deleted/<id>/deleted_manifest.json`; undelete moves them back; hard delete
 *    removes them. Missing objects are skipped (IMS logs and goes on), so a record is never stuck.
 */
import type { Readable } from "node:stream";
import { imsTimestamp } from "../artifacts/result.js";
import { ARTIFACT_KINDS } from "../artifacts/types.js";
import { KilnError, type ErrorCode, type Problem } from "../errors.js";
import { ObjectNotFound, type ObjectInfo, type ObjectStore } from "../store/object-store.js";
import type { ArtifactLink, ImageRecord, RecipeRecord } from "./records.js";

export const IMS_BUCKET = "ims";
export const BOOT_IMAGES_BUCKET = "boot-images";
export const BUCKETS = [IMS_BUCKET, BOOT_IMAGES_BUCKET] as const;

/** IMS' MAX_IMAGE_MANIFEST_SIZE_BYTES. */
export const MAX_MANIFEST_BYTES = 1024 * 1024;

/** The rootfs artifact an IMS manifest must list exactly once (the media-type table: artifacts/types.ts). */
export const ROOTFS_TYPE = ARTIFACT_KINDS.squashfs.type;
/** The type of an IMS image's manifest.json object itself, not of an artifact Kiln makes. */
export const MANIFEST_TYPE = "application/vnd.cray.image.manifest";

export interface ManifestArtifact {
  type: string;
  md5?: string;
  link: { path: string; etag?: string; type: string };
  [extra: string]: unknown;
}

export interface ImageManifest {
  version: string;
  created?: string;
  artifacts: ManifestArtifact[];
}

function apiError(code: ErrorCode, message: string, problems?: Problem[]): KilnError {
  return new KilnError(code, message, problems ? { problems } : {});
}

/** Where PUT /v3/recipes/{id}/archive stores an upload: a key of its own, so concurrent uploads never share one. */
export function recipeArchiveKey(recipeId: string, uploadId: string): string {
  return `${recipePrefix(recipeId)}${uploadId}/recipe.tar.gz`;
}

export function s3Path(bucket: string, key: string): string {
  return `s3://${bucket}/${key}`;
}

/** `s3://bucket/key` → its parts, or undefined when it is not such a path. */
export function parseS3Path(p: string): { bucket: string; key: string } | undefined {
  const m = /^s3:\/\/([^/]+)\/(.+)$/.exec(p);
  return m ? { bucket: m[1]!, key: m[2]! } : undefined;
}

export async function headOrUndefined(store: ObjectStore, bucket: string, key: string): Promise<ObjectInfo | undefined> {
  try {
    return await store.head(bucket, key);
  } catch (e) {
    if (e instanceof ObjectNotFound) return undefined;
    throw e;
  }
}

export async function readAll(stream: Readable, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of stream) {
    const b = c as Buffer;
    size += b.length;
    if (size > limit) {
      stream.destroy();
      throw apiError("BAD_REQUEST", `object is larger than ${limit} bytes`);
    }
    chunks.push(b);
  }
  return Buffer.concat(chunks);
}

/** Checks that a link names an object that exists; returns the object. 422 otherwise (IMS). */
async function requireObject(store: ObjectStore, link: ArtifactLink, field: string): Promise<{ bucket: string; key: string; info: ObjectInfo }> {
  const where = parseS3Path(link.path);
  if (!where) throw apiError("REQUEST_INVALID", `${field}.path ${JSON.stringify(link.path)} is not an s3://bucket/key path`, [{ path: `${field}.path`, message: "use s3://<bucket>/<key>" }]);
  const info = await headOrUndefined(store, where.bucket, where.key);
  if (!info) throw apiError("REQUEST_INVALID", `${field}.path ${link.path}: no such object in the store`, [{ path: `${field}.path`, message: "no such object" }]);
  return { ...where, info };
}

/** The prefix of bucket `ims` that belongs to recipe `id`: its link may name objects under it only. */
export function recipePrefix(id: string): string {
  return `recipes/${id}/`;
}

/** The recipe id whose prefix (recipePrefix) a link path names, if it names one. */
export function recipeIdOfLink(p: string): string | undefined {
  const where = parseS3Path(p);
  const m = where?.bucket === IMS_BUCKET ? /^recipes\/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\/(.+)$/.exec(where.key) : null;
  // "." and ".." are names to S3 but paths to a filesystem store: neither may climb out of the prefix.
  if (!m || m[2]!.split("/").some((seg) => seg === "" || seg === "." || seg === "..")) return undefined;
  return m[1];
}

/**
 * A recipe link must name an existing object under the recipe's own prefix in bucket `ims`
 * (recipePrefix) that no other live recipe links (§1.2 POST recipes). The prefix rule is Kiln's:
 * a recipe deleted with cascade deletes the object it links, which must never be an image's
 * rootfs or another recipe's archive.
 */
export async function validateRecipeLink(store: ObjectStore, others: string[], link: ArtifactLink, recipeId: string, field = "link"): Promise<void> {
  if (recipeIdOfLink(link.path) !== recipeId) {
    const own = s3Path(IMS_BUCKET, recipePrefix(recipeId));
    throw apiError("REQUEST_INVALID", `${field}.path ${JSON.stringify(link.path)} is outside this recipe's own prefix ${own}; upload the archive under it and link that (or use PUT /v3/recipes/${recipeId}/archive)`, [
      { path: `${field}.path`, message: `must name an object under ${own}` },
    ]);
  }
  if (others.length > 0) {
    throw apiError("REQUEST_INVALID", `${field}.path ${link.path} is already the link of recipe ${others[0]}`, [{ path: `${field}.path`, message: "already used by another recipe" }]);
  }
  await requireObject(store, link, field);
}

/** IMS' validate_image_manifest (§2.3), in its order and with its status codes. */
export async function validateImageManifest(store: ObjectStore, others: string[], link: ArtifactLink, field = "link"): Promise<ImageManifest> {
  if (others.length > 0) {
    throw apiError("REQUEST_INVALID", `${field}.path ${link.path} is already the link of image ${others[0]}`, [{ path: `${field}.path`, message: "already used by another image" }]);
  }
  const { bucket, key, info } = await requireObject(store, link, field);
  if (info.size >= MAX_MANIFEST_BYTES) throw apiError("BAD_REQUEST", `${field}: the manifest ${link.path} is ${info.size} bytes; IMS accepts manifests under ${MAX_MANIFEST_BYTES}`);
  const text = (await readAll(await store.get(bucket, key), MAX_MANIFEST_BYTES)).toString("utf8");
  let m: unknown;
  try {
    m = JSON.parse(text);
  } catch (e) {
    throw apiError("REQUEST_INVALID", `${field}: the manifest ${link.path} is not JSON (${(e as Error).message})`, [{ path: field, message: "manifest is not JSON" }]);
  }
  const problems: Array<{ path: string; message: string }> = [];
  const man = m as Partial<ImageManifest>;
  if (typeof m !== "object" || m === null || man.version !== "1.0") problems.push({ path: "manifest.version", message: 'must be "1.0"' });
  if (!Array.isArray(man.artifacts)) problems.push({ path: "manifest.artifacts", message: "must be a list of artifacts" });
  if (problems.length) throw apiError("REQUEST_INVALID", `${field}: the manifest ${link.path} is not an IMS manifest: ${problems.map((p) => `${p.path} ${p.message}`).join("; ")}`, problems);
  const artifacts = man.artifacts!;
  for (const [i, a] of artifacts.entries()) {
    const at = `manifest.artifacts[${i}]`;
    if (typeof a !== "object" || a === null || typeof a.link !== "object" || a.link === null) {
      problems.push({ path: at, message: "must be an object with a link" });
      continue;
    }
    if (a.link.type !== "s3") problems.push({ path: `${at}.link.type`, message: 'must be "s3"' });
    const where = typeof a.link.path === "string" ? parseS3Path(a.link.path) : undefined;
    if (!where) problems.push({ path: `${at}.link.path`, message: "must be an s3://bucket/key path" });
    else if (!(await headOrUndefined(store, where.bucket, where.key))) problems.push({ path: `${at}.link.path`, message: `${a.link.path}: no such object` });
  }
  if (problems.length) throw apiError("REQUEST_INVALID", `${field}: the manifest ${link.path} has bad artifacts: ${problems.map((p) => `${p.path} ${p.message}`).join("; ")}`, problems);
  const roots = artifacts.filter((a) => typeof a.type === "string" && a.type.startsWith(ROOTFS_TYPE)).length;
  if (roots !== 1) throw apiError("BAD_REQUEST", `${field}: the manifest ${link.path} has ${roots} rootfs artifacts (type ${ROOTFS_TYPE}); IMS requires exactly one`);
  return man as ImageManifest;
}

/** Moves an object to a new key in its bucket; undefined when the source is missing. */
export async function moveObject(store: ObjectStore, bucket: string, from: string, to: string): Promise<ObjectInfo | undefined> {
  try {
    const info = await store.copy(bucket, from, to);
    await store.delete(bucket, from);
    return info;
  } catch (e) {
    if (e instanceof ObjectNotFound) return undefined;
    throw e;
  }
}

async function readManifest(store: ObjectStore, bucket: string, key: string): Promise<ImageManifest | undefined> {
  try {
    const m = JSON.parse((await readAll(await store.get(bucket, key), MAX_MANIFEST_BYTES)).toString("utf8")) as ImageManifest;
    return Array.isArray(m.artifacts) ? m : undefined;
  } catch {
    return undefined; // missing or unreadable: IMS logs and goes on
  }
}

const DELETED = "deleted/";

/** Soft delete of an image's objects: returns the link the deleted record gets. */
export async function softDeleteImageObjects(store: ObjectStore, image: ImageRecord): Promise<ArtifactLink | null> {
  const where = image.link ? parseS3Path(image.link.path) : undefined;
  if (!where) return image.link;
  const moved: ManifestArtifact[] = [];
  const manifest = await readManifest(store, where.bucket, where.key);
  for (const a of manifest?.artifacts ?? []) {
    const at = parseS3Path(a.link?.path ?? "");
    if (!at || at.key.startsWith(DELETED)) continue;
    const info = await moveObject(store, at.bucket, at.key, DELETED + at.key);
    if (info) moved.push({ type: a.type, ...(a.md5 ? { md5: a.md5 } : {}), link: { path: s3Path(at.bucket, DELETED + at.key), etag: info.etag, type: "s3" } });
  }
  const info = await moveObject(store, where.bucket, where.key, DELETED + where.key);
  if (info) moved.push({ type: MANIFEST_TYPE, link: { path: s3Path(where.bucket, DELETED + where.key), etag: info.etag, type: "s3" } });
  const deletedManifest = `${DELETED}${image.id}/deleted_manifest.json`;
  const doc = { version: "1.0", created: imsTimestamp(new Date()), artifacts: moved };
  await store.put(BOOT_IMAGES_BUCKET, deletedManifest, JSON.stringify(doc, null, 4), { contentType: "application/json" });
  return { path: s3Path(BOOT_IMAGES_BUCKET, deletedManifest), etag: "", type: "s3" };
}

/** Undelete of an image's objects: returns the link the live record gets back. */
export async function undeleteImageObjects(store: ObjectStore, image: ImageRecord): Promise<ArtifactLink | null> {
  const where = image.link ? parseS3Path(image.link.path) : undefined;
  if (!where || !where.key.endsWith("/deleted_manifest.json")) return image.link;
  const manifest = await readManifest(store, where.bucket, where.key);
  let restored: ArtifactLink | null = null;
  for (const a of manifest?.artifacts ?? []) {
    const at = parseS3Path(a.link?.path ?? "");
    if (!at || !at.key.startsWith(DELETED)) continue;
    const original = at.key.slice(DELETED.length);
    const info = await moveObject(store, at.bucket, at.key, original);
    if (a.type === MANIFEST_TYPE) restored = { path: s3Path(at.bucket, original), etag: info?.etag ?? "", type: "s3" };
  }
  await store.delete(where.bucket, where.key);
  return restored;
}

/** Removes every object of an image: its manifest's artifacts and the manifest (live or deleted). */
export async function purgeImageObjects(store: ObjectStore, image: ImageRecord): Promise<void> {
  const where = image.link ? parseS3Path(image.link.path) : undefined;
  if (!where) return;
  const manifest = await readManifest(store, where.bucket, where.key);
  for (const a of manifest?.artifacts ?? []) {
    const at = parseS3Path(a.link?.path ?? "");
    if (at) await store.delete(at.bucket, at.key);
  }
  await store.delete(where.bucket, where.key);
}

export async function softDeleteRecipeObject(store: ObjectStore, recipe: RecipeRecord): Promise<ArtifactLink | null> {
  const where = recipe.link ? parseS3Path(recipe.link.path) : undefined;
  if (!where || where.key.startsWith(DELETED)) return recipe.link;
  const info = await moveObject(store, where.bucket, where.key, DELETED + where.key);
  return { path: s3Path(where.bucket, DELETED + where.key), etag: info?.etag ?? recipe.link!.etag, type: "s3" };
}

export async function undeleteRecipeObject(store: ObjectStore, recipe: RecipeRecord): Promise<ArtifactLink | null> {
  const where = recipe.link ? parseS3Path(recipe.link.path) : undefined;
  if (!where || !where.key.startsWith(DELETED)) return recipe.link;
  const original = where.key.slice(DELETED.length);
  const info = await moveObject(store, where.bucket, where.key, original);
  return { path: s3Path(where.bucket, original), etag: info?.etag ?? recipe.link!.etag, type: "s3" };
}

export async function purgeRecipeObject(store: ObjectStore, recipe: RecipeRecord): Promise<void> {
  const where = recipe.link ? parseS3Path(recipe.link.path) : undefined;
  if (where) await store.delete(where.bucket, where.key);
}
