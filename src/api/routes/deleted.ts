/**
 * /v3/deleted/{recipes,images,public-keys}: soft-deleted records (docs/architecture.md#ims-behaviour-kiln-follows). GET lists or
 * describes them, PATCH {"operation": "undelete"} restores them (objects move back from
 * `deleted/`), DELETE removes them for good with every object their link or deleted manifest
 * lists. Collection-wide PATCH and DELETE act on every deleted record of the kind.
 */
import type { FastifyInstance } from "fastify";
import type { Catalog } from "../../catalog/catalog.js";
import { purgeImageObjects, purgeRecipeObject, undeleteImageObjects, undeleteRecipeObject } from "../../catalog/objects.js";
import type { ImageRecord, PublicKeyRecord, RecipeRecord } from "../../catalog/records.js";
import type { ObjectStore } from "../../store/object-store.js";
import { Undelete, idParam } from "../schemas.js";
import { empty, notFound, requireBody, responses, sendJson, sendJsonList } from "./common.js";

type Kind = "recipes" | "images" | "public-keys";

const NOUN: Record<Kind, string> = { recipes: "recipe", images: "image", "public-keys": "public key" };
const SCHEMA: Record<Kind, string> = { recipes: "DeletedRecipeRecord#", images: "DeletedImageRecord#", "public-keys": "DeletedPublicKeyRecord#" };

async function restore(catalog: Catalog, store: ObjectStore, kind: Kind, doc: RecipeRecord | ImageRecord | PublicKeyRecord): Promise<void> {
  const { deleted: _gone, ...live } = doc;
  if (kind === "images") {
    const link = await undeleteImageObjects(store, doc as ImageRecord);
    await catalog.markUndeleted("images", doc.id, { ...(live as ImageRecord), link });
  } else if (kind === "recipes") {
    const link = await undeleteRecipeObject(store, doc as RecipeRecord);
    await catalog.markUndeleted("recipes", doc.id, { ...(live as RecipeRecord), link });
  } else {
    await catalog.markUndeleted("public-keys", doc.id, live as PublicKeyRecord);
  }
}

async function purge(catalog: Catalog, store: ObjectStore, kind: Kind, doc: RecipeRecord | ImageRecord | PublicKeyRecord): Promise<void> {
  if (kind === "images") await purgeImageObjects(store, doc as ImageRecord);
  if (kind === "recipes") await purgeRecipeObject(store, doc as RecipeRecord);
  await catalog.remove(kind, doc.id, true);
}

export async function deletedRoutes(app: FastifyInstance): Promise<void> {
  const { catalog, store } = app;
  for (const kind of ["recipes", "images", "public-keys"] as const) {
    const tags = ["deleted v3"];
    const record = { $ref: SCHEMA[kind] };
    const noun = NOUN[kind];

    app.get(`/deleted/${kind}`, { schema: { summary: `List deleted ${kind}`, tags, response: responses({ 200: { type: "array", items: record } }) } }, async (request, reply) =>
      sendJsonList(request, reply, catalog, `deleted/${kind}`, await catalog.listJson(kind, true)),
    );

    app.delete(`/deleted/${kind}`, { schema: { summary: `Permanently delete every deleted ${noun} and its objects`, tags, response: responses({ 204: empty }) } }, async (_req, reply) => {
      for (const d of await catalog.list(kind, true)) await purge(catalog, store, kind, d);
      return reply.code(204).send();
    });

    app.patch(
      `/deleted/${kind}`,
      { preValidation: requireBody, schema: { summary: `Restore every deleted ${noun}`, tags, body: Undelete, response: responses({ 204: empty }, [400, 422]) } },
      async (_req, reply) => {
        for (const d of await catalog.list(kind, true)) await restore(catalog, store, kind, d);
        return reply.code(204).send();
      },
    );

    app.get<{ Params: { id: string } }>(`/deleted/${kind}/:id`, { schema: { summary: `Describe a deleted ${noun}`, tags, params: idParam, response: responses({ 200: record }, [404]) } }, async (request, reply) => {
      const body = await catalog.getJson(kind, request.params.id, true);
      if (!body) notFound(noun, request.params.id, true);
      return sendJson(reply, 200, body);
    });

    app.delete<{ Params: { id: string } }>(
      `/deleted/${kind}/:id`,
      { schema: { summary: `Permanently delete a deleted ${noun} and its objects`, tags, params: idParam, response: responses({ 204: empty }, [404]) } },
      async (request, reply) => {
        const d = await catalog.get(kind, request.params.id, true);
        if (!d) notFound(noun, request.params.id, true);
        await purge(catalog, store, kind, d);
        return reply.code(204).send();
      },
    );

    app.patch<{ Params: { id: string } }>(
      `/deleted/${kind}/:id`,
      { preValidation: requireBody, schema: { summary: `Restore a deleted ${noun}`, tags, params: idParam, body: Undelete, response: responses({ 204: empty }, [400, 404, 422]) } },
      async (request, reply) => {
        const d = await catalog.get(kind, request.params.id, true);
        if (!d) notFound(noun, request.params.id, true);
        await restore(catalog, store, kind, d);
        return reply.code(204).send();
      },
    );
  }
}
