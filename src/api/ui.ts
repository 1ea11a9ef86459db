/**
 * The web console (docs/service.md#web-console): the static bundle `npm ci` builds from ui/ into
 * dist/ui/ (ui/build.mjs), served at /ui/ with no token (it holds no data; every call it makes
 * carries the token the user pastes), and the redirect of a browser asking for / to it.
 *
 * The bundle is a handful of files known when the process starts, read once into memory: no file
 * system path is ever built from a request, so there is nothing to traverse.
 */
import { createHash } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import fp from "fastify-plugin";
import { apiError } from "./problem.js";

/**
 * Every UI response carries it. Scripts and styles only from files this service serves (no inline
 * code, no eval, no CDN); API calls to this origin only; the console is never framed
 * (clickjacking); no plugins, no <base> rewrites, forms post nowhere else.
 */
export const UI_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join("; ");

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".map": "application/json",
};

interface Asset {
  body: Buffer;
  type: string;
  etag: string;
}

/** dist/ui/, beside dist/src/ where this module runs from. */
export const UI_DIR = fileURLToPath(new URL("../../ui/", import.meta.url));

async function loadAssets(dir: string): Promise<Map<string, Asset>> {
  const assets = new Map<string, Asset>();
  const names = await readdir(dir).catch(() => [] as string[]);
  for (const name of names) {
    const type = TYPES[path.extname(name)];
    if (!type) continue;
    const body = await readFile(path.join(dir, name));
    assets.set(name, { body, type, etag: `"${createHash("sha256").update(body).digest("base64url").slice(0, 22)}"` });
  }
  return assets;
}

function securityHeaders(reply: FastifyReply): FastifyReply {
  return reply
    .header("content-security-policy", UI_CSP)
    .header("x-content-type-options", "nosniff")
    .header("x-frame-options", "DENY")
    .header("referrer-policy", "no-referrer")
    .header("cross-origin-opener-policy", "same-origin");
}

/** Whether the client is a browser navigating (it prefers HTML), not an API client. */
export function wantsHtml(accept: string | undefined): boolean {
  return /(?:^|,)\s*text\/html\s*(?:[;,]|$)/i.test(accept ?? "");
}

export const uiPlugin = fp(
  async (app: FastifyInstance, opts: { dir?: string }) => {
    const assets = await loadAssets(opts.dir ?? UI_DIR);

    // Before auth (this plugin is registered first): a browser opening the service's address has
    // no token yet. Anything else asking for / gets what it got before (the API's answer).
    app.addHook("onRequest", async (request: FastifyRequest, reply: FastifyReply) => {
      if ((request.method === "GET" || request.method === "HEAD") && /^\/(?:\?|$)/.test(request.url) && wantsHtml(request.headers.accept)) {
        return reply.code(302).header("location", "/ui/").header("vary", "accept").send();
      }
    });

    const send = (request: FastifyRequest, reply: FastifyReply, name: string) => {
      const a = assets.get(name);
      securityHeaders(reply);
      if (!a) {
        if (name === "index.html") throw apiError("NOT_FOUND", "the web console is not built: run `npm run build:ui` (npm ci builds it)");
        throw apiError("NOT_FOUND", `no console file ${name}`);
      }
      // Revalidated every time: the names do not change between versions, the ETag does.
      reply.header("cache-control", "no-cache").header("etag", a.etag).type(a.type);
      if (request.headers["if-none-match"] === a.etag) return reply.code(304).send();
      return reply.send(a.body);
    };
    const config = { open: true };
    const schema = { hide: true };
    app.get("/ui", { config, schema }, async (request, reply) => send(request, reply, "index.html"));
    app.get<{ Params: { file: string } }>("/ui/:file", { config, schema }, async (request, reply) => send(request, reply, request.params.file));
  },
  { name: "ui" },
);
