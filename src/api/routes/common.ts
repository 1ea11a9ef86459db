/** Helpers the resource routes share: JSON replies, the empty-body rule, 404s, response schemas. */
import type { FastifyReply, FastifyRequest } from "fastify";
import { apiError } from "../problem.js";

/** Sends JSON text or a value as JSON, bypassing Fastify's serializer (records are stored as the JSON we serve). */
export function sendJson(reply: FastifyReply, status: number, body: unknown): FastifyReply {
  return reply
    .code(status)
    .type("application/json")
    .send(typeof body === "string" ? body : JSON.stringify(body));
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
