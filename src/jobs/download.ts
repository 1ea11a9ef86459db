/**
 * Downloads an object of the store to a file, checking its md5 against what the record or the
 * store says it should be (IMS' fetch.py checks the md5 of every artifact it fetches).
 */
import { createHash } from "node:crypto";
import { createWriteStream } from "node:fs";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { headOrUndefined, parseS3Path } from "../catalog/objects.js";
import type { ObjectStore } from "../store/object-store.js";
import { jobError } from "./job-error.js";

export interface Downloaded {
  size: number;
  md5: string;
  /** Of the bytes downloaded (provenance of a customized image names its source by it). */
  sha256: string;
}

/**
 * `what` names the object in errors ("recipe R's archive"). `expectMd5`: the manifest's md5; the
 * store's md5sum metadata is checked too when it has one. `expectEtag`: the record's link etag,
 * when it has one: the object must still be the one the record linked, not another written to the
 * same key since. `maxSize` refuses bigger objects.
 */
export async function downloadObject(
  store: ObjectStore,
  s3path: string,
  file: string,
  o: { what: string; signal: AbortSignal; expectMd5?: string; expectEtag?: string; maxSize?: number; maxSizeHint?: string },
): Promise<Downloaded> {
  const where = parseS3Path(s3path);
  if (!where) throw jobError(`${o.what}: ${s3path} is not an s3://bucket/key path`);
  const info = await headOrUndefined(store, where.bucket, where.key);
  if (!info) throw jobError(`${o.what}: ${s3path} is not in the store`);
  if (o.expectEtag && o.expectEtag.replace(/"/g, "") !== info.etag) {
    throw jobError(`${o.what}: ${s3path} has etag ${info.etag}, but the record links etag ${o.expectEtag}: the object was replaced after it was linked; upload the archive again as a new recipe`);
  }
  if (o.maxSize !== undefined && info.size > o.maxSize) throw jobError(`${o.what} is ${info.size} bytes; this service accepts at most ${o.maxSize}${o.maxSizeHint ? ` (${o.maxSizeHint})` : ""}`);
  const md5 = createHash("md5");
  const sha256 = createHash("sha256");
  const hash = new Transform({
    transform(chunk: Buffer, _e, done) {
      md5.update(chunk);
      sha256.update(chunk);
      done(null, chunk);
    },
  });
  await pipeline(await store.get(where.bucket, where.key), hash, createWriteStream(file), { signal: o.signal });
  const got = md5.digest("hex");
  for (const [whose, want] of [["the manifest's md5", o.expectMd5], ["the store's md5sum", info.metadata.md5sum]] as const) {
    if (want && want !== got) throw jobError(`${o.what}: downloaded ${s3path} has md5 ${got}, ${whose} says ${want}`);
  }
  return { size: info.size, md5: got, sha256: sha256.digest("hex") };
}
