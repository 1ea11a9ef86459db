/**
 * Presigned GETs for the fs store. A directory has no server of its own, so its presigned URLs
 * point at the Kiln service (`publicUrl`, e.g. `http://kiln:8080/objects`), which mounts
 * serveSignedObject() there: `<publicUrl>/<bucket>/<key>?expires=<unix s>&signature=<hmac>`.
 * Like S3's SigV4 query signing, the URL carries no credential, expires, and any change to the
 * bucket, key or expiry is refused (403); GET and HEAD, with single byte ranges, as boot clients and
 * IMS jobs use them. A `file://` URL was the alternative, but neither plain fetch() nor a booting
 * machine can read one, and it could not expire.
 *
 *   app.get("/objects/*", (req, reply) => {                  // e.g. in the Fastify app
 *     reply.hijack();
 *     return serveSignedObject(store, req.url.slice("/objects/".length), req.raw, reply.raw);
 *   });
 */
import { createHmac, timingSafeEqual } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { pipeline } from "node:stream/promises";
import { parseRange } from "./byte-range.js";
import type { FsStore } from "./fs-store.js";
import { ObjectNotFound } from "./object-store.js";

export type PresignCheck = { ok: true; bucket: string; key: string } | { ok: false; reason: string };

export function signObjectUrl(publicUrl: string, secret: string, bucket: string, key: string, seconds: number, now = Date.now()): string {
  if (!Number.isInteger(seconds) || seconds <= 0) throw new RangeError(`presign: seconds must be a positive integer, got ${seconds}`);
  const expires = Math.floor(now / 1000) + seconds;
  const urlPath = [bucket, ...key.split("/")].map(encodeURIComponent).join("/");
  return `${publicUrl}/${urlPath}?expires=${expires}&signature=${signature(secret, bucket, key, expires)}`;
}

/** `target` is the request's path and query below publicUrl: "bucket/key?expires=…&signature=…". */
export function verifyObjectUrl(secret: string, target: string, now = Date.now()): PresignCheck {
  const q = target.indexOf("?");
  const params = new URLSearchParams(q < 0 ? "" : target.slice(q + 1));
  let segments: string[];
  try {
    segments = (q < 0 ? target : target.slice(0, q)).replace(/^\/+/, "").split("/").map(decodeURIComponent);
  } catch {
    return { ok: false, reason: "malformed URL" };
  }
  const [bucket, ...rest] = segments;
  const key = rest.join("/");
  const expires = Number(params.get("expires"));
  if (!bucket || !key || !Number.isSafeInteger(expires) || !params.has("signature")) {
    return { ok: false, reason: "not a presigned object URL" };
  }
  const want = Buffer.from(signature(secret, bucket, key, expires));
  const got = Buffer.from(params.get("signature") ?? "");
  if (got.length !== want.length || !timingSafeEqual(got, want)) return { ok: false, reason: "signature does not match" };
  if (expires * 1000 < now) return { ok: false, reason: "URL expired" };
  return { ok: true, bucket, key };
}

function signature(secret: string, bucket: string, key: string, expires: number): string {
  return createHmac("sha256", secret).update(`GET\n${bucket}\n${key}\n${expires}`).digest("hex");
}

/** Answers a presigned fs-store URL; `target` as for verifyObjectUrl. Headers follow S3's GET. */
export async function serveSignedObject(store: FsStore, target: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
  if (req.method !== "GET" && req.method !== "HEAD") {
    res.setHeader("allow", "GET, HEAD");
    return send(res, 405, "only GET and HEAD");
  }
  const check = await store.checkPresigned(target);
  if (!check.ok) return send(res, 403, check.reason);
  const { bucket, key } = check;
  let info;
  try {
    info = await store.head(bucket, key);
  } catch (e) {
    if (e instanceof ObjectNotFound) return send(res, 404, "no such object");
    throw e;
  }
  res.setHeader("accept-ranges", "bytes");
  res.setHeader("content-type", info.contentType ?? "application/octet-stream");
  res.setHeader("etag", `"${info.etag}"`);
  res.setHeader("last-modified", info.lastModified.toUTCString());
  for (const [name, value] of Object.entries(info.metadata)) res.setHeader(`x-amz-meta-${name}`, value);
  const range = parseRange(req.headers.range, info.size);
  if (range === "unsatisfiable") {
    res.setHeader("content-range", `bytes */${info.size}`);
    return send(res, 416, "range not satisfiable");
  }
  if (range) {
    res.statusCode = 206;
    res.setHeader("content-range", `bytes ${range[0]}-${range[1]}/${info.size}`);
  }
  res.setHeader("content-length", String(range ? range[1] - range[0] + 1 : info.size));
  if (req.method === "HEAD" || info.size === 0) {
    res.end();
    return;
  }
  const body = await store.get(bucket, key, range ? { start: range[0], end: range[1] } : undefined);
  // A client that hangs up mid-download is not an error of ours; pipeline closes the file.
  await pipeline(body, res).catch(() => {});
}

function send(res: ServerResponse, status: number, message: string): void {
  res.statusCode = status;
  res.setHeader("content-type", "text/plain; charset=utf-8");
  res.setHeader("content-length", String(Buffer.byteLength(message) + 1));
  res.end(message + "\n");
}
