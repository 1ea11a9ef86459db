/**
 * Bearer-token auth. Every route but /version, /healthz/*, /openapi.json (documentation, no
 * data, like /version) and the routes that authorise requests
 * themselves (`config: { open: true }`: presigned object URLs, whose signature is the credential)
 * needs `Authorization: Bearer <token>`; the token's role decides what it may do: `admin`
 * everything, `read-only` GET and HEAD only (403 otherwise). Tokens come from `kiln token create`
 * (tokens.ts).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import fp from "fastify-plugin";
import { apiError, sendProblem } from "./problem.js";
import type { Role, TokenVerifier } from "./tokens.js";

declare module "fastify" {
  interface FastifyRequest {
    role?: Role;
  }
  interface FastifyContextConfig {
    /** The route needs no bearer token: it checks each request itself (a presigned URL's signature). */
    open?: boolean;
  }
}

const OPEN = /^(?:\/apis\/ims)?\/(?:version|healthz\/(?:ready|live))\/?(?:\?|$)/;
const READS = new Set(["GET", "HEAD", "OPTIONS"]);

export const authPlugin = fp(
  async (app: FastifyInstance, opts: { tokens: TokenVerifier }) => {
    app.addHook("onRequest", async (request: FastifyRequest, reply: FastifyReply) => {
      if (OPEN.test(request.url) || request.routeOptions.config.open === true) return;
      const header = request.headers.authorization ?? "";
      const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
      if (!m) {
        reply.header("www-authenticate", 'Bearer realm="kiln"');
        return sendProblem(reply, apiError("UNAUTHORIZED", "this route needs a bearer token: send Authorization: Bearer <token> (kiln token create makes one)"));
      }
      const role = await opts.tokens.roleOf(m[1]!);
      if (!role) {
        reply.header("www-authenticate", 'Bearer realm="kiln", error="invalid_token"');
        return sendProblem(reply, apiError("UNAUTHORIZED", "the bearer token is not one this service knows (revoked, or made for another --data-dir)"));
      }
      request.role = role;
      if (role !== "admin" && !READS.has(request.method)) {
        return sendProblem(reply, apiError("FORBIDDEN", `a ${role} token may only read; ${request.method} needs an admin token`));
      }
    });
  },
  { name: "auth" },
);
