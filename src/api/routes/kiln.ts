/**
 * Kiln's own v3 routes beside IMS': artifact download (what `kiln ims images download` uses, so
 * artifacts are reachable through the API whatever the store is), presigned download URLs of an
 * image's artifacts (fetched with no token, from S3 itself or from this service's /objects/),
 * the role of the caller's token (whoami), and the worker registry.
 */
import type { FastifyInstance } from "fastify";
import { KILN_VERSION } from "../../version.js";
import { LABELS } from "../../streams/names.js";
import { BUCKETS, headOrUndefined, MAX_MANIFEST_BYTES, parseS3Path, readAll, type ImageManifest } from "../../catalog/objects.js";
import { ObjectNotFound } from "../../store/object-store.js";
import { apiError } from "../problem.js";
import { ROLES } from "../tokens.js";
import { idParam } from "../schemas.js";
import { notFound, responses, sendJson } from "./common.js";

/** How long presigned URLs may last: S3's SigV4 allows at most 7 days; one rule for every store. */
export const MAX_URL_SECONDS = 7 * 24 * 3600;
export const DEFAULT_URL_SECONDS = 3600;

const presignedArtifact = {
  type: "object",
  required: ["type", "path", "url"],
  properties: {
    type: { type: "string", description: "the manifest's type, e.g. application/vnd.cray.image.rootfs.squashfs" },
    md5: { type: "string", description: "md5 of the object, from the manifest: check the download against it" },
    flavor: { type: "string", description: "the kernel flavor (Kiln's manifests; the first flavor's artifacts have IMS' keys)" },
    path: { type: "string", description: "the artifact's link path, s3://bucket/key" },
    url: { type: "string", description: "GET (or HEAD, with Range) it with no token until expires_at" },
  },
};

const ImageUrls = {
  type: "object",
  description: "Presigned download URLs of an image's manifest and artifacts",
  required: ["image_id", "expires_in", "expires_at", "manifest", "artifacts"],
  properties: {
    image_id: { type: "string" },
    expires_in: { type: "integer", description: "seconds the URLs are valid for" },
    expires_at: { type: "string", format: "date-time", description: "when they stop working (UTC, ISO 8601)" },
    manifest: { type: "object", properties: { path: { type: "string" }, url: { type: "string" } } },
    artifacts: { type: "array", items: presignedArtifact, description: "in the manifest's order" },
  },
};

/**
 * Where a catalog or store is, for people: scheme, user name, host, port and path only. Passwords,
 * query parameters (libpq takes `?password=`) and fragments never leave the process, whatever
 * the URL held; a directory (PGlite's) is shown as it is.
 */
export function publicLocation(where: string): string {
  let u: URL;
  try {
    u = new URL(where);
  } catch {
    return where.startsWith("/") ? where : "(not shown)";
  }
  if (!["postgres:", "postgresql:", "file:", "s3:"].includes(u.protocol)) return "(not shown)";
  const user = u.username ? `${u.username}@` : "";
  return u.host ? `${u.protocol}//${user}${u.host}${u.pathname === "/" ? "" : u.pathname}` : `${u.protocol}//${u.pathname}`;
}

const ServiceInfo = {
  type: "object",
  required: ["version", "catalog", "store"],
  properties: {
    version: { type: "string" },
    catalog: {
      type: "object",
      properties: { kind: { type: "string", enum: ["pglite", "postgres"], description: "PGlite embedded in --data-dir, or PostgreSQL (--database)" }, location: { type: "string", description: "its directory, or its URL without password or parameters" } },
    },
    store: {
      type: "object",
      properties: { kind: { type: "string", enum: ["file", "s3"] }, location: { type: "string", description: "its directory or S3 endpoint; never credentials" } },
    },
  },
};

export async function kilnRoutes(app: FastifyInstance): Promise<void> {
  const { store, catalog } = app;

  app.get(
    "/service",
    {
      schema: {
        summary: "The catalog and object store this service uses, and its version (Kiln)",
        description: "What the web console's Service page shows. Locations only: no password, key or query parameter of the configured URLs is ever answered.",
        tags: ["kiln"],
        response: responses({ 200: ServiceInfo }),
      },
    },
    async (_req, reply) =>
      sendJson(reply, 200, {
        version: KILN_VERSION,
        catalog: { kind: catalog.sql.dialect, location: publicLocation(catalog.sql.where) },
        store: { kind: store.url.startsWith("s3:") ? "s3" : "file", location: publicLocation(store.url) },
      }),
  );

  app.get<{ Params: { bucket: string; "*": string } }>(
    "/artifacts/:bucket/*",
    {
      schema: {
        summary: "Download an object of bucket ims or boot-images (Kiln)",
        description: "Streams the object. Headers: ETag, X-Kiln-Md5sum (the md5sum metadata IMS sets), X-Kiln-Sha256 (the sha256 a Kiln job recorded), Content-Length.",
        tags: ["kiln"],
        params: { type: "object", properties: { bucket: { type: "string", enum: [...BUCKETS] } }, required: ["bucket"] },
        produces: "application/octet-stream",
        response: responses({ 200: { type: "string", format: "binary" } }, [404]),
      },
    },
    async (request, reply) => {
      const { bucket } = request.params;
      const key = request.params["*"];
      if (!key || key.split("/").some((p) => p === ".." || p === ".")) throw apiError("NOT_FOUND", `no object ${bucket}/${key}`);
      const info = await headOrUndefined(store, bucket, key);
      if (!info) throw apiError("NOT_FOUND", `no object s3://${bucket}/${key}`);
      reply
        .type(info.contentType ?? "application/octet-stream")
        .header("content-length", String(info.size))
        .header("etag", `"${info.etag}"`);
      if (info.metadata.md5sum) reply.header("x-kiln-md5sum", info.metadata.md5sum);
      // The sha256 a job's upload records (jobs/publish.ts): the console shows it without reading the object.
      if (info.metadata.sha256) reply.header("x-kiln-sha256", info.metadata.sha256);
      return reply.send(await store.get(bucket, key));
    },
  );

  app.post<{ Params: { id: string }; Body: { to: string } }>(
    "/images/:id/promote",
    {
      schema: {
        summary: "Move an image Kiln made to another simplestreams label, e.g. candidate to stable (Kiln)",
        description: "A successful create or customize job labels its image candidate; this moves it. 409 for an image no Kiln job made (it has no kernel flavors to publish).",
        tags: ["kiln"],
        params: idParam,
        body: { type: "object", required: ["to"], additionalProperties: false, properties: { to: { type: "string", enum: [...LABELS], description: "the label" } } },
        response: responses({ 200: { $ref: "ImageRecord#" } }, [400, 404, 409, 422]),
      },
    },
    async (request, reply) => {
      const { id } = request.params;
      const { to } = request.body;
      const current = await catalog.get("images", id);
      if (!current) notFound("image", id);
      if (!current.kiln || current.kiln.flavors.length === 0) throw apiError("CONFLICT", `image ${id} was not made by a Kiln job: it has no kernel flavors to publish, so no label`);
      const updated = await catalog.update("images", id, (doc) => ({ ...doc, kiln: { ...doc.kiln!, label: to } }));
      if (!updated) notFound("image", id);
      return sendJson(reply, 200, updated);
    },
  );

  app.get<{ Params: { id: string }; Querystring: { expires?: string } }>(
    "/images/:id/urls",
    {
      schema: {
        summary: "Presigned download URLs of an image's artifacts, fetched with no token (Kiln)",
        description:
          "Signs a GET of the image's manifest.json and of every artifact it lists. With an S3 store the URLs point at the S3 server (SigV4); with a directory, at this service's /objects/ below --public-url. 409 when the image has no link yet.",
        tags: ["kiln"],
        params: idParam,
        querystring: {
          type: "object",
          additionalProperties: false,
          properties: { expires: { type: "string", pattern: "^[0-9]{1,9}$", description: `seconds the URLs stay valid: 1 to ${MAX_URL_SECONDS} (7 days, S3's limit); default ${DEFAULT_URL_SECONDS}` } },
        },
        response: responses({ 200: ImageUrls }, [404, 409, 422]),
      },
    },
    async (request, reply) => {
      const { id } = request.params;
      const seconds = request.query.expires === undefined ? DEFAULT_URL_SECONDS : Number(request.query.expires);
      if (seconds < 1 || seconds > MAX_URL_SECONDS) {
        throw apiError("REQUEST_INVALID", `expires=${request.query.expires}: URLs last 1 to ${MAX_URL_SECONDS} seconds (7 days)`, [{ path: "expires", message: `must be 1 to ${MAX_URL_SECONDS}` }]);
      }
      const image = await catalog.get("images", id);
      if (!image) notFound("image", id);
      const where = image.link ? parseS3Path(image.link.path) : undefined;
      if (!image.link || !where) throw apiError("CONFLICT", `image ${id} has no link yet: its artifacts are not uploaded (a job links the image when it ends)`);
      let manifest: ImageManifest;
      try {
        manifest = JSON.parse((await readAll(await store.get(where.bucket, where.key), MAX_MANIFEST_BYTES)).toString("utf8")) as ImageManifest;
      } catch (e) {
        if (e instanceof ObjectNotFound) throw apiError("CONFLICT", `image ${id} links ${image.link.path}, which is not in the store`);
        if (e instanceof SyntaxError) throw apiError("CONFLICT", `image ${id} links ${image.link.path}, which is not JSON`);
        throw e;
      }
      const expiresAt = new Date((Math.floor(Date.now() / 1000) + seconds) * 1000);
      const artifacts = [];
      for (const a of Array.isArray(manifest.artifacts) ? manifest.artifacts : []) {
        const at = typeof a.link?.path === "string" ? parseS3Path(a.link.path) : undefined;
        if (!at) throw apiError("CONFLICT", `image ${id}: the manifest ${image.link.path} has an artifact without an s3:// link`);
        artifacts.push({
          type: a.type,
          ...(typeof a.md5 === "string" ? { md5: a.md5 } : {}),
          ...(typeof a.flavor === "string" ? { flavor: a.flavor } : {}),
          path: a.link.path,
          url: await store.presignGet(at.bucket, at.key, seconds),
        });
      }
      return sendJson(reply, 200, {
        image_id: id,
        expires_in: seconds,
        expires_at: expiresAt.toISOString(),
        manifest: { path: image.link.path, url: await store.presignGet(where.bucket, where.key, seconds) },
        artifacts,
      });
    },
  );

  app.get(
    "/whoami",
    {
      schema: {
        summary: "The role of the token sent (Kiln)",
        description: "What the web console asks after login, to show write controls to admin tokens only. The token itself is not echoed.",
        tags: ["kiln"],
        response: responses({ 200: { type: "object", required: ["role"], properties: { role: { type: "string", enum: [...ROLES], description: "admin: reads and writes; read-only: GET and HEAD only" } } } }, [401]),
      },
    },
    async (request, reply) => sendJson(reply, 200, { role: request.role }),
  );

  app.get(
    "/workers",
    {
      schema: {
        summary: "Workers and their heartbeats (Kiln)",
        tags: ["kiln"],
        response: responses({
          200: {
            type: "array",
            items: {
              type: "object",
              properties: {
                name: { type: "string" },
                instance: { type: "string", description: "random id of the worker process; a worker restarted under the same name is a new instance (a new row)" },
                host: { type: "string" },
                pid: { type: "integer" },
                version: { type: "string" },
                concurrency: { type: "integer" },
                running: { type: "integer" },
                started: { type: "string" },
                last_seen: { type: "string" },
                stopped: { type: ["string", "null"] },
                alive: { type: "boolean" },
              },
            },
          },
        }),
      },
    },
    async (_req, reply) => reply.type("application/json").send(JSON.stringify(await catalog.workers(app.settings.workerTimeout))),
  );
}
