/**
 * /images. An image record links a manifest.json in bucket `boot-images`; the link is validated
 * as IMS does (docs/architecture.md#ims-behaviour-kiln-follows) when it is set, by POST or by PATCH, and is set once (409 after).
 */
import { randomUUID } from "node:crypto";
import type { FastifyInstance } from "fastify";
import { purgeImageObjects, softDeleteImageObjects, validateImageManifest } from "../../catalog/objects.js";
import { imsTime, type Arch, type ArtifactLink, type ImageRecord } from "../../catalog/records.js";
import { apiError } from "../problem.js";
import { ImageCreate, ImagePatch, idParam } from "../schemas.js";
import { cascadeOf, cascadeQuery, empty, notFound, requireBody, responses, sendJson, sendJsonList } from "./common.js";

interface ImageBody {
  name: string;
  link?: ArtifactLink | null;
  arch: Arch;
  metadata: Record<string, string>;
}

interface ImagePatchBody {
  link?: ArtifactLink;
  arch?: Arch;
  metadata?: { operation: "set" | "remove"; key: string; value?: string };
}

export async function imageRoutes(app: FastifyInstance, opts: { version: 2 | 3 }): Promise<void> {
  const { catalog, store } = app;
  const v3 = opts.version === 3;
  const tags = [`images v${opts.version}`];
  const record = { $ref: "ImageRecord#" };

  app.get("/images", { schema: { summary: "List images", tags, response: responses({ 200: { type: "array", items: record } }) } }, async (request, reply) =>
    sendJsonList(request, reply, catalog, "images", await catalog.listJson("images")),
  );

  app.post<{ Body: ImageBody }>(
    "/images",
    { preValidation: requireBody, schema: { summary: "Register an image (usually without link; the link is PATCHed once the artifacts are uploaded)", tags, body: ImageCreate, response: responses({ 201: record }, [400, 422]) } },
    async (request, reply) => {
      const b = request.body;
      const link = b.link ? { ...b.link, etag: b.link.etag ?? "" } : null;
      if (link) await validateImageManifest(store, await catalog.idsWithLink("images", link.path), link);
      // IMS quirk (v3/resources/images.py post): {"key": k, "value": v} means {k: v}.
      let metadata = b.metadata;
      if ("key" in metadata) metadata = { [metadata.key!]: metadata.value ?? "" };
      const doc: ImageRecord = { id: randomUUID(), created: imsTime(), name: b.name, link, arch: b.arch, metadata };
      return sendJson(reply, 201, await catalog.insert("images", doc));
    },
  );

  app.delete("/images", { schema: { summary: v3 ? "Soft-delete every image" : "Delete every image", tags, ...(v3 ? {} : { querystring: cascadeQuery }), response: responses({ 204: empty }) } }, async (request, reply) => {
    const cascade = v3 ? false : cascadeOf(request);
    for (const i of await catalog.list("images")) await deleteImage(i, cascade);
    return reply.code(204).send();
  });

  app.get<{ Params: { id: string } }>("/images/:id", { schema: { summary: "Describe an image", tags, params: idParam, response: responses({ 200: record }, [404]) } }, async (request, reply) => {
    const body = await catalog.getJson("images", request.params.id);
    if (!body) notFound("image", request.params.id);
    return sendJson(reply, 200, body);
  });

  app.patch<{ Params: { id: string }; Body: ImagePatchBody }>(
    "/images/:id",
    {
      preValidation: requireBody,
      schema: { summary: "Change an image: link (once), arch, one metadata operation", tags, params: idParam, body: ImagePatch, response: responses({ 200: record }, [400, 404, 409, 422]) },
    },
    async (request, reply) => {
      const b = request.body;
      const id = request.params.id;
      const current = await catalog.get("images", id);
      if (!current) notFound("image", id);
      if (b.metadata?.operation === "set" && b.metadata.value === undefined) {
        throw apiError("REQUEST_INVALID", "metadata.value is required for operation set", [{ path: "metadata.value", message: "missing data for required field" }]);
      }
      // Validate outside the row lock: it reads the manifest from the store.
      if (b.link && current.link && current.link.path !== b.link.path) throw conflict(id, current.link, b.link);
      if (b.link && !current.link) await validateImageManifest(store, (await catalog.idsWithLink("images", b.link.path)).filter((x) => x !== id), b.link);
      const updated = await catalog.update("images", id, (doc) => {
        const next = { ...doc, metadata: { ...doc.metadata } };
        if (b.link) {
          if (doc.link && doc.link.path !== b.link.path) throw conflict(id, doc.link, b.link);
          if (!doc.link) next.link = { ...b.link, etag: b.link.etag ?? "" };
        }
        if (b.arch !== undefined) next.arch = b.arch;
        if (b.metadata?.operation === "set") next.metadata[b.metadata.key] = b.metadata.value!;
        if (b.metadata?.operation === "remove") delete next.metadata[b.metadata.key];
        return next;
      });
      if (!updated) notFound("image", id);
      return sendJson(reply, 200, updated);
    },
  );

  app.delete<{ Params: { id: string } }>(
    "/images/:id",
    {
      schema: {
        summary: v3 ? "Soft-delete an image: its artifacts and manifest move to deleted/ (see /v3/deleted/images)" : "Delete an image (and its artifacts unless cascade=false)",
        tags,
        params: idParam,
        ...(v3 ? {} : { querystring: cascadeQuery }),
        response: responses({ 204: empty }, [404]),
      },
    },
    async (request, reply) => {
      const i = await catalog.get("images", request.params.id);
      if (!i) notFound("image", request.params.id);
      await deleteImage(i, v3 ? false : cascadeOf(request));
      return reply.code(204).send();
    },
  );

  async function deleteImage(i: ImageRecord, cascade: boolean): Promise<void> {
    if (v3) {
      const link = await softDeleteImageObjects(store, i);
      await catalog.markDeleted("images", i.id, { ...i, link, deleted: imsTime() });
    } else {
      if (cascade) await purgeImageObjects(store, i);
      await catalog.remove("images", i.id);
    }
  }
}

function conflict(id: string, have: ArtifactLink, want: ArtifactLink) {
  return apiError("CONFLICT", `image ${id} already links ${have.path}; a link is set once (asked for ${want.path}); register a new image instead`);
}
