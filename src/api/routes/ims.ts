/**
 * The IMS API under one prefix (registered at / and at /apis/ims): /version and /healthz, v3 with
 * its deleted/ and remote-build-nodes routes and Kiln's additions, and v2 semantics (hard delete,
 * ?cascade) at both /v2 and the unversioned root, as IMS' v2 blueprint does (docs/architecture.md#ims-behaviour-kiln-follows).
 */
import type { FastifyInstance } from "fastify";
import { KILN_VERSION } from "../../version.js";
import { apiError } from "../problem.js";
import { deletedRoutes } from "./deleted.js";
import { imageRoutes } from "./images.js";
import { jobRoutes } from "./jobs.js";
import { kilnRoutes } from "./kiln.js";
import { publicKeyRoutes } from "./public-keys.js";
import { recipeRoutes } from "./recipes.js";
import { remoteBuildNodeRoutes } from "./remote-build-nodes.js";

export async function imsRoutes(app: FastifyInstance): Promise<void> {
  const health = { type: "object", additionalProperties: false };
  app.get("/version", { schema: { summary: "Service version", tags: ["service"], response: { 200: { type: "object", properties: { version: { type: "string" } } } } } }, async (_req, reply) =>
    reply.type("application/json").send(JSON.stringify({ version: KILN_VERSION })),
  );
  app.get("/healthz/live", { schema: { summary: "Liveness: the process answers", tags: ["service"], response: { 200: health } } }, async (_req, reply) => reply.type("application/json").send("{}"));
  app.get("/healthz/ready", { schema: { summary: "Readiness: the catalog answers", tags: ["service"], response: { 200: health, 503: { $ref: "Problem#" } } } }, async (_req, reply) => {
    try {
      await app.catalog.sql.query("SELECT 1");
    } catch (e) {
      throw apiError("CATALOG_FAILED", `not ready: ${(e as Error).message}`);
    }
    return reply.type("application/json").send("{}");
  });

  await app.register(
    async (v3) => {
      await v3.register(publicKeyRoutes, { version: 3 });
      await v3.register(recipeRoutes, { version: 3 });
      await v3.register(imageRoutes, { version: 3 });
      await v3.register(jobRoutes, { version: 3 });
      await v3.register(deletedRoutes);
      await v3.register(remoteBuildNodeRoutes);
      await v3.register(kilnRoutes);
    },
    { prefix: "/v3" },
  );
  for (const prefix of ["/v2", ""]) {
    await app.register(
      async (v2) => {
        await v2.register(publicKeyRoutes, { version: 2 });
        await v2.register(recipeRoutes, { version: 2 });
        await v2.register(imageRoutes, { version: 2 });
        await v2.register(jobRoutes, { version: 2 });
      },
      { prefix },
    );
  }
}
