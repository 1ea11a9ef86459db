/**
 * Kiln's own v3 routes beside IMS': artifact download (what `kiln ims images download` uses, so
 * artifacts are reachable through the API whatever the store is) and the worker registry.
 */
import type { FastifyInstance } from "fastify";
import { BUCKETS, headOrUndefined } from "../../catalog/objects.js";
import { apiError } from "../problem.js";
import { responses } from "./common.js";

export async function kilnRoutes(app: FastifyInstance): Promise<void> {
  const { store, catalog } = app;

  app.get<{ Params: { bucket: string; "*": string } }>(
    "/artifacts/:bucket/*",
    {
      schema: {
        summary: "Download an object of bucket ims or boot-images (Kiln)",
        description: "Streams the object. Headers: ETag, X-Kiln-Md5sum (the md5sum metadata IMS sets), Content-Length.",
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
      return reply.send(await store.get(bucket, key));
    },
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
