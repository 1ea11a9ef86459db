/** /public-keys: the SSH keys a job's shells accept. No PATCH (IMS has none). */
import { randomUUID } from "node:crypto";
import type { FastifyInstance } from "fastify";
import { imsTime, type PublicKeyRecord } from "../../catalog/records.js";
import { PublicKeyCreate, idParam } from "../schemas.js";
import { empty, notFound, requireBody, responses, sendJson, sendJsonList } from "./common.js";

export async function publicKeyRoutes(app: FastifyInstance, opts: { version: 2 | 3 }): Promise<void> {
  const { catalog } = app;
  const v3 = opts.version === 3;
  const tags = [`public-keys v${opts.version}`];
  const record = { $ref: "PublicKeyRecord#" };

  app.get("/public-keys", { schema: { summary: "List public keys", tags, response: responses({ 200: { type: "array", items: record } }) } }, async (request, reply) =>
    sendJsonList(request, reply, catalog, "public-keys", await catalog.listJson("public-keys")),
  );

  app.post<{ Body: { name: string; public_key: string } }>(
    "/public-keys",
    { preValidation: requireBody, schema: { summary: "Add a public key", tags, body: PublicKeyCreate, response: responses({ 201: record }, [400, 422]) } },
    async (request, reply) => {
      const doc: PublicKeyRecord = { id: randomUUID(), created: imsTime(), name: request.body.name, public_key: request.body.public_key };
      return sendJson(reply, 201, await catalog.insert("public-keys", doc));
    },
  );

  app.delete("/public-keys", { schema: { summary: v3 ? "Soft-delete every public key" : "Delete every public key", tags, response: responses({ 204: empty }) } }, async (_req, reply) => {
    for (const k of await catalog.list("public-keys")) {
      if (v3) await catalog.markDeleted("public-keys", k.id, { ...k, deleted: imsTime() });
      else await catalog.remove("public-keys", k.id);
    }
    return reply.code(204).send();
  });

  app.get<{ Params: { id: string } }>("/public-keys/:id", { schema: { summary: "Describe a public key", tags, params: idParam, response: responses({ 200: record }, [404]) } }, async (request, reply) => {
    const body = await catalog.getJson("public-keys", request.params.id);
    if (!body) notFound("public key", request.params.id);
    return sendJson(reply, 200, body);
  });

  app.delete<{ Params: { id: string } }>(
    "/public-keys/:id",
    { schema: { summary: v3 ? "Soft-delete a public key (see /v3/deleted/public-keys)" : "Delete a public key", tags, params: idParam, response: responses({ 204: empty }, [404]) } },
    async (request, reply) => {
      const k = await catalog.get("public-keys", request.params.id);
      if (!k) notFound("public key", request.params.id);
      if (v3) await catalog.markDeleted("public-keys", k.id, { ...k, deleted: imsTime() });
      else await catalog.remove("public-keys", k.id);
      return reply.code(204).send();
    },
  );
}
