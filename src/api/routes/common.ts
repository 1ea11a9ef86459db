/** Helpers the resource routes share: JSON replies, the empty-body rule, 404s, response schemas. */
import { promisify } from "node:util";
import { gzip } from "node:zlib";
import type { FastifyReply, FastifyRequest } from "fastify";
import { apiError } from "../problem.js";

const gzipAsync = promisify(gzip);

/** Sends JSON text or a value as JSON, bypassing Fastify's serializer (records are stored as the JSON we serve). */
export function sendJson(reply: FastifyReply, status: number, body: unknown): FastifyReply {
  return reply
    .code(status)
    .type("application/json")
    .send(typeof body === "string" ? body : JSON.stringify(body));
}

/** Lists smaller than this go out as they are. */
const GZIP_MIN_BYTES = 64 * 1024;

/** The encoded forms of the list last sent, per collection of a catalog. */
const lists = new WeakMap<object, Map<string, { text: string; bytes: Buffer; gzip?: Promise<Buffer> }>>();

/** Whether the client takes gzip (Accept-Encoding lists gzip or *, without q=0). */
export function acceptsGzip(header: string | string[] | undefined): boolean {
  for (const part of [header ?? ""].flat().join(",").split(",")) {
    const [coding, ...params] = part.trim().toLowerCase().split(";");
    if (coding !== "gzip" && coding !== "*") continue;
    const q = params.map((p) => /^\s*q\s*=\s*([\d.]+)\s*$/.exec(p)?.[1]).find((v) => v !== undefined);
    if (q === undefined || Number(q) > 0) return true;
  }
  return false;
}

/**
 * Sends a collection (IMS has no paging: 10,000 images are 3 MB of JSON). The same text is not
 * encoded again for the next request: its bytes, and once a client asks for gzip its compressed
 * form (about a tenth; made off the event loop), are kept until the text changes. `owner` is
 * what the text came from (the catalog), `key` names the collection.
 */
export async function sendJsonList(request: FastifyRequest, reply: FastifyReply, owner: object, key: string, text: string): Promise<FastifyReply> {
  let byKey = lists.get(owner);
  if (!byKey) lists.set(owner, (byKey = new Map()));
  let e = byKey.get(key);
  // Equal text is the same list; the catalog hands out the very same string while it is cached,
  // so this is mostly a pointer comparison.
  if (!e || e.text !== text) byKey.set(key, (e = { text, bytes: Buffer.from(text) }));
  reply.code(200).type("application/json; charset=utf-8").header("vary", "accept-encoding");
  if (e.bytes.length >= GZIP_MIN_BYTES && acceptsGzip(request.headers["accept-encoding"])) {
    e.gzip ??= gzipAsync(e.bytes, { level: 6 });
    return reply.header("content-encoding", "gzip").send(await e.gzip);
  }
  return reply.send(e.bytes);
}

/**
 * IMS answers 400 to a missing or empty body (Flask's `if not json_data`), before any field is
 * checked: `{}` is empty too.
 */
export async function requireBody(request: FastifyRequest): Promise<void> {
  const b = request.body;
  if (b === undefined || b === null || b === "" || (typeof b === "object" && !Array.isArray(b) && Object.keys(b).length === 0)) {
    throw apiError("BAD_REQUEST", "the request body is empty; send a JSON object with the record's fields");
  }
}

export function notFound(what: string, id: string, deleted = false): never {
  throw apiError("NOT_FOUND", deleted ? `no deleted ${what} with id ${id}` : `no ${what} with id ${id}${what === "job" ? "" : " (deleted ones are under /v3/deleted/)"}`);
}

const problem = { $ref: "Problem#" };

/** Response schemas for the usual codes; `ok` maps success codes to their body schemas. */
export function responses(ok: Record<number, unknown>, errors: number[] = []): Record<number, unknown> {
  const r: Record<number, unknown> = { ...ok };
  for (const code of errors) r[code] = problem;
  return r;
}

export const empty = { type: "null", description: "No content" };

/** `?cascade=true|false` (v2 hard delete), default true as in IMS. */
export function cascadeOf(request: FastifyRequest): boolean {
  const v = (request.query as Record<string, unknown> | undefined)?.cascade;
  if (v === undefined) return true;
  if (v === "true" || v === "True") return true;
  if (v === "false" || v === "False") return false;
  throw apiError("BAD_REQUEST", `cascade=${JSON.stringify(v)}: use true or false`);
}

export const cascadeQuery = { type: "object", properties: { cascade: { type: "string", enum: ["true", "false", "True", "False"], description: "also delete the S3 objects (default true)" } } };
