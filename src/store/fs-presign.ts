/**
 * Presigned GETs for the fs store. A directory has no server of its own, so its presigned URLs
 * point at the Kiln service (`publicUrl`, e.g. `http://kiln:8080/objects`), which answers them
 * there: `<publicUrl>/<bucket>/<key>?expires=<unix s>&signature=<hmac>`.
 * Like S3's SigV4 query signing, the URL carries no credential, expires, and any change to the
 * bucket, key or expiry is refused (403); GET and HEAD, with single byte ranges, as boot clients and
 * IMS jobs use them. A `file://` URL was the alternative, but neither plain fetch() nor a booting
 * machine can read one, and it could not expire.
 *
 *   http.createServer((req, res) => serveSignedObject(store, req.url!.slice(1), req, res));
 *
 * `kiln serve` answers them at `<public-url>/objects/` (src/api/routes/objects.ts) from
 * answerSignedObject(), with its own RFC 7807 errors.
 */
import { createHmac, timingSafeEqual } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Readable } from "node:stream";
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

/**
 * What a presigned fs-store request gets, decided before anything is sent: S3's GET headers and
 * the bytes to stream (none for HEAD), or a refusal with its status and reason (403 a changed or
 * expired URL, 404 no such object, 405 not GET/HEAD, 416 a range outside the object). The HTTP
 * layer chooses the error body: serveSignedObject() plain text, `kiln serve` RFC 7807.
 */
export type SignedObjectAnswer =
  | { ok: true; status: 200 | 206; headers: Record<string, string>; body: (() => Promise<Readable>) | undefined }
  | { ok: false; status: 403 | 404 | 405 | 416; headers: Record<string, string>; reason: string };

/** `target` as for verifyObjectUrl; `range` the request's Range header. */
export async function answerSignedObject(store: FsStore, target: string, method: string, range: string | undefined, now = Date.now()): Promise<SignedObjectAnswer> {
  if (method !== "GET" && method !== "HEAD") return { ok: false, status: 405, headers: { allow: "GET, HEAD" }, reason: "only GET and HEAD" };
  const check = await store.checkPresigned(target, now);
  if (!check.ok) return { ok: false, status: 403, headers: {}, reason: check.reason };
  const { bucket, key } = check;
  let info;
  try {
    info = await store.head(bucket, key);
  } catch (e) {
    if (e instanceof ObjectNotFound) return { ok: false, status: 404, headers: {}, reason: "no such object" };
    throw e;
  }
  const headers: Record<string, string> = {
    "accept-ranges": "bytes",
    "content-type": info.contentType ?? "application/octet-stream",
    etag: `"${info.etag}"`,
    "last-modified": info.lastModified.toUTCString(),
  };
  for (const [name, value] of Object.entries(info.metadata)) headers[`x-amz-meta-${name}`] = value;
  const bytes = parseRange(range, info.size);
  if (bytes === "unsatisfiable") return { ok: false, status: 416, headers: { "content-range": `bytes */${info.size}` }, reason: `range ${range} is outside the object's ${info.size} bytes` };
  if (bytes) headers["content-range"] = `bytes ${bytes[0]}-${bytes[1]}/${info.size}`;
  headers["content-length"] = String(bytes ? bytes[1] - bytes[0] + 1 : info.size);
  const body = method === "HEAD" || info.size === 0 ? undefined : () => store.get(bucket, key, bytes ? { start: bytes[0], end: bytes[1] } : undefined);
  return { ok: true, status: bytes ? 206 : 200, headers, body };
}

/** Answers a presigned fs-store URL on a plain node:http server; `target` as for verifyObjectUrl. */
export async function serveSignedObject(store: FsStore, target: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const answer = await answerSignedObject(store, target, req.method ?? "GET", req.headers.range);
  for (const [name, value] of Object.entries(answer.headers)) res.setHeader(name, value);
  if (!answer.ok) return send(res, answer.status, answer.reason);
  let body: Readable | undefined;
  try {
    body = await answer.body?.();
  } catch (e) {
    if (e instanceof ObjectNotFound) return send(res, 404, "no such object"); // deleted since head()
    throw e;
  }
  res.statusCode = answer.status;
  if (!body) {
    res.end();
    return;
  }
  // A client that hangs up mid-download is not an error of ours; pipeline closes the file.
  await pipeline(body, res).catch(() => {});
}

function send(res: ServerResponse, status: number, message: string): void {
  res.statusCode = status;
  res.setHeader("content-type", "text/plain; charset=utf-8");
  res.setHeader("content-length", String(Buffer.byteLength(message) + 1));
  res.end(message + "\n");
}
