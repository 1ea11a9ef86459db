/**
 * GET /openapi.json: an OpenAPI 3.0 document made from the routes' own schemas (the same ones
 * Fastify validates with), so it cannot drift from what the server does. It lists the routes at
 * the root; the `servers` entry says the same API is served under /apis/ims. Kiln's additions
 * (logs, cancel, recipe upload, artifact download, workers) carry the tag `kiln`.
 */
import type { FastifyInstance, RouteOptions } from "fastify";
import fp from "fastify-plugin";
import { KILN_VERSION } from "../version.js";
import { SHARED_SCHEMAS } from "./schemas.js";

type Schema = Record<string, unknown>;

declare module "fastify" {
  interface FastifySchema {
    /** OpenAPI: what the route does, in a line. */
    summary?: string;
    description?: string;
    tags?: string[];
    /** Left out of /openapi.json. */
    hide?: boolean;
    /** OpenAPI security requirements when not the document's (`[]`: no token, e.g. presigned URLs). */
    security?: Array<Record<string, string[]>>;
    /** Media type of a non-JSON request body / response. */
    consumes?: string;
    produces?: string;
  }
}

/** `{$ref: "RecipeRecord#"}` (Fastify's shared-schema form) → `#/components/schemas/RecipeRecord`. */
function toOpenApi(s: unknown): unknown {
  if (Array.isArray(s)) return s.map(toOpenApi);
  if (!s || typeof s !== "object") return s;
  const out: Schema = {};
  for (const [k, v] of Object.entries(s as Schema)) {
    if (k === "$ref" && typeof v === "string") out.$ref = `#/components/schemas/${v.replace(/#$/, "")}`;
    else if (k === "$id") continue;
    else if (k === "type" && Array.isArray(v) && v.includes("null")) {
      // OpenAPI 3.0 has no type arrays: ["string", "null"] is type string, nullable.
      out.type = v.find((t) => t !== "null");
      out.nullable = true;
    } else out[k] = toOpenApi(v);
  }
  return out;
}

function parameters(schema: Schema | undefined, where: "path" | "query"): Schema[] {
  const props = (schema?.properties ?? {}) as Record<string, Schema>;
  const required = new Set((schema?.required as string[] | undefined) ?? []);
  return Object.entries(props).map(([name, s]) => ({ name, in: where, required: where === "path" || required.has(name), schema: toOpenApi(s), ...(s.description ? { description: s.description } : {}) }));
}

export const openapiPlugin = fp(
  async (app: FastifyInstance) => {
    const routes: RouteOptions[] = [];
    app.addHook("onRoute", (r) => {
      if (r.url.startsWith("/apis/ims") || (r.schema as Schema | undefined)?.hide) return;
      for (const m of [r.method].flat()) if (m !== "HEAD") routes.push({ ...r, method: m });
    });
    let doc: string | undefined;
    // Open like /version: it documents the routes and holds no data.
    app.get("/openapi.json", { config: { open: true }, schema: { summary: "This document", tags: ["kiln"], hide: true } }, async (_req, reply) => {
      doc ??= JSON.stringify(buildDocument(routes));
      return reply.type("application/json").send(doc);
    });
  },
  { name: "openapi" },
);

function buildDocument(routes: RouteOptions[]): Schema {
  const paths: Record<string, Record<string, Schema>> = {};
  for (const r of routes) {
    const schema = (r.schema ?? {}) as Schema;
    const p = r.url.replace(/:([A-Za-z_]+)/g, "{$1}").replace(/\*$/, "{key}");
    const op: Schema = {
      ...(schema.summary ? { summary: schema.summary } : {}),
      ...(schema.description ? { description: schema.description } : {}),
      ...(schema.tags ? { tags: schema.tags } : {}),
      ...(schema.security ? { security: schema.security } : {}),
      parameters: [...parameters(schema.params as Schema | undefined, "path"), ...parameters(schema.querystring as Schema | undefined, "query")],
      responses: {},
    };
    if (p.includes("{key}") && !(op.parameters as Schema[]).some((x) => x.name === "key")) {
      (op.parameters as Schema[]).push({ name: "key", in: "path", required: true, schema: { type: "string" }, description: "object key (may contain /)" });
    }
    if (schema.body) op.requestBody = { required: true, content: { [(schema.consumes as string | undefined) ?? "application/json"]: { schema: toOpenApi(schema.body) } } };
    else if (schema.consumes) op.requestBody = { required: true, content: { [schema.consumes as string]: { schema: { type: "string", format: "binary" } } } };
    const responses = (schema.response ?? {}) as Record<string, Schema>;
    for (const [code, s] of Object.entries(responses)) {
      const desc = (s.description as string | undefined) ?? (code.startsWith("2") ? "OK" : "Problem");
      const content = s.type === "null" || code === "204" ? undefined : { [code.startsWith("2") ? ((schema.produces as string | undefined) ?? "application/json") : "application/problem+json"]: { schema: toOpenApi(s) } };
      (op.responses as Schema)[code] = { description: desc, ...(content ? { content } : {}) };
    }
    if (!("default" in (op.responses as Schema))) {
      (op.responses as Schema).default = { description: "Problem (RFC 7807)", content: { "application/problem+json": { schema: { $ref: "#/components/schemas/Problem" } } } };
    }
    (paths[p] ??= {})[String(r.method).toLowerCase()] = op;
  }
  const components: Record<string, unknown> = {};
  for (const s of SHARED_SCHEMAS) components[(s as Schema).$id as string] = toOpenApi(s);
  return {
    openapi: "3.0.3",
    info: {
      title: "Kiln image service (Cray IMS v3 compatible)",
      version: KILN_VERSION,
      description:
        "The Cray IMS API as the IMS server behaves (records, jobs, soft delete), plus Kiln's additions tagged `kiln`: job logs, cancel, stage timings, recipe archive upload, artifact download, workers.",
    },
    servers: [{ url: "/" }, { url: "/apis/ims" }],
    security: [{ bearer: [] }],
    components: { schemas: components, securitySchemes: { bearer: { type: "http", scheme: "bearer" } } },
    paths,
  };
}
