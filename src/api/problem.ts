/**
 * RFC 7807 problem details for every error the API returns, as IMS does (docs/architecture.md#ims-behaviour-kiln-follows:
 * `{type: "about:blank", title, status, detail, errors?}`), plus Kiln's `code` (docs/errors.md).
 *
 * - a KilnError becomes its code's status, its message the detail, its problems `errors[]`;
 * - a schema validation failure is 422 with one `errors[]` entry per field;
 * - an empty body is 400, JSON that does not parse 400, a body over the limit 413;
 * - an unknown URL is 404 and a known URL with the wrong method 405 (with Allow);
 * - anything else is a bug: 500 with a generic detail, the stack goes to the service log.
 */
import { STATUS_CODES } from "node:http";
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import fp from "fastify-plugin";
import { ERROR_CODES, isKilnError, KilnError, type ErrorCode, type Problem } from "../errors.js";

export interface ProblemBody {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: string;
  errors?: Problem[];
}

export function problemBody(status: number, code: string, detail: string, errors?: Problem[]): ProblemBody {
  return { type: "about:blank", title: STATUS_CODES[status] ?? "Error", status, detail, code, ...(errors && errors.length ? { errors } : {}) };
}

export function sendProblem(reply: FastifyReply, e: KilnError): FastifyReply {
  const status = e.status;
  return reply
    .code(status)
    .type("application/problem+json")
    .send(problemBody(status, e.code, e.hint ? `${e.message} (${e.hint})` : e.message, e.problems));
}

/** Shorthand for route code: `throw apiError("NOT_FOUND", "no image 42")`. */
export function apiError(code: ErrorCode, message: string, problems?: Problem[]): KilnError {
  return new KilnError(code, message, problems ? { problems } : {});
}

interface AjvError {
  instancePath: string;
  keyword: string;
  message?: string;
  params: Record<string, unknown>;
}

/** Turns ajv's errors into `{path, message}` entries an operator can act on. */
export function validationProblems(errors: AjvError[], context: string): Problem[] {
  return errors.map((e) => {
    const base = e.instancePath.replace(/^\//, "").replace(/\/(\d+)(?=\/|$)/g, "[$1]").replace(/\//g, ".");
    if (e.keyword === "additionalProperties") {
      const field = String(e.params.additionalProperty);
      return { path: base ? `${base}.${field}` : field, message: "unknown field" };
    }
    if (e.keyword === "required") {
      const field = String(e.params.missingProperty);
      return { path: base ? `${base}.${field}` : field, message: "missing data for required field" };
    }
    if (e.keyword === "enum") {
      return { path: base || context, message: `must be one of: ${(e.params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(", ")}` };
    }
    return { path: base || context, message: e.message ?? e.keyword };
  });
}

function fastifyProblem(e: FastifyError): KilnError | undefined {
  switch (e.code) {
    case "FST_ERR_CTP_EMPTY_JSON_BODY":
      return apiError("BAD_REQUEST", "the request body is empty; send a JSON object");
    case "FST_ERR_CTP_INVALID_MEDIA_TYPE":
      return apiError("BAD_REQUEST", `${e.message}; send Content-Type: application/json`);
    case "FST_ERR_CTP_BODY_TOO_LARGE":
      return apiError("TOO_LARGE", "the request body is too large");
    case "FST_ERR_CTP_INVALID_CONTENT_LENGTH":
      return apiError("BAD_REQUEST", e.message);
  }
  if (e instanceof SyntaxError || (e.statusCode === 400 && /JSON/i.test(e.message))) {
    return apiError("BAD_REQUEST", `the request body is not valid JSON: ${e.message}`);
  }
  if (e.validation) {
    const where = e.validationContext ?? "body";
    const problems = validationProblems(e.validation as AjvError[], where);
    return apiError("REQUEST_INVALID", `the request ${where} is invalid: ${problems.map((p) => `${p.path}: ${p.message}`).join("; ")}`, problems);
  }
  if (e.statusCode === 413) return apiError("TOO_LARGE", e.message);
  if (e.statusCode && e.statusCode >= 400 && e.statusCode < 500) return apiError("BAD_REQUEST", e.message);
  return undefined;
}

/** A route pattern ("/v3/images/:id") as a regexp over concrete paths. */
function patternRegexp(url: string): RegExp {
  const body = url
    .split("/")
    .map((seg) => (seg.startsWith(":") ? "[^/]+" : seg === "*" ? ".*" : seg.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")))
    .join("/");
  return new RegExp(`^${body}/?$`);
}

export const problemDetails = fp(
  async (app: FastifyInstance) => {
    const routes: Array<{ re: RegExp; methods: Set<string> }> = [];
    const byUrl = new Map<string, { re: RegExp; methods: Set<string> }>();
    app.addHook("onRoute", (r) => {
      let entry = byUrl.get(r.url);
      if (!entry) {
        entry = { re: patternRegexp(r.url), methods: new Set() };
        byUrl.set(r.url, entry);
        routes.push(entry);
      }
      for (const m of [r.method].flat()) entry.methods.add(m);
    });

    app.setErrorHandler((error: FastifyError, request: FastifyRequest, reply: FastifyReply) => {
      if (isKilnError(error)) return sendProblem(reply, error);
      const mapped = fastifyProblem(error);
      if (mapped) return sendProblem(reply, mapped);
      request.log.error({ err: error }, "internal error");
      return reply
        .code(500)
        .type("application/problem+json")
        .send(problemBody(500, "INTERNAL", `internal error (a bug in Kiln; the service log has the details, request ${request.id})`));
    });

    app.setNotFoundHandler((request, reply) => {
      const p = request.url.split("?")[0]!;
      const allowed = new Set<string>();
      for (const r of routes) if (r.re.test(p)) for (const m of r.methods) allowed.add(m);
      if (allowed.size > 0) {
        reply.header("allow", [...allowed].sort().join(", "));
        return sendProblem(reply, apiError("METHOD_NOT_ALLOWED", `${request.method} is not allowed on ${p}; allowed: ${[...allowed].sort().join(", ")}`));
      }
      return sendProblem(reply, apiError("NOT_FOUND", `no route ${request.method} ${p}`));
    });
  },
  { name: "problem-details" },
);

export { ERROR_CODES };
