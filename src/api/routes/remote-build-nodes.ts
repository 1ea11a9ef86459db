/**
 * /v3/remote-build-nodes (v3 only, as in IMS: the v2 blueprint never had them, and the root
 * alias the spec lists was never served). Records are `{xname}`, listed in the order registered;
 * POST of a known xname replaces it (IMS stores a dict by xname) and answers 201; DELETE is a
 * hard delete. The status routes compute a status when asked: see
 * src/jobs/remote-build-node-status.ts for what Kiln can and cannot know about such a node.
 * `status/{xname}` answers one object, as the IMS server does (its spec says an array).
 */
import type { FastifyInstance } from "fastify";
import { remoteBuildNodeStatus } from "../../jobs/remote-build-node-status.js";
import { apiError } from "../problem.js";
import { RemoteBuildNodeCreate, xnameParam } from "../schemas.js";
import { empty, requireBody, responses, sendJson } from "./common.js";

function unknownNode(xname: string): never {
  throw apiError("NOT_FOUND", `no remote build node ${JSON.stringify(xname)}`);
}

export async function remoteBuildNodeRoutes(app: FastifyInstance): Promise<void> {
  const { catalog } = app;
  const tags = ["remote build nodes v3"];
  const record = { $ref: "RemoteBuildNodeRecord#" };
  const status = { $ref: "RemoteBuildNodeStatus#" };

  app.get("/remote-build-nodes", { schema: { summary: "List remote build nodes", tags, response: responses({ 200: { type: "array", items: record } }) } }, async (_req, reply) =>
    sendJson(reply, 200, await catalog.remoteBuildNodesJson()),
  );

  app.post<{ Body: { xname: string } }>(
    "/remote-build-nodes",
    {
      preValidation: requireBody,
      schema: { summary: "Register a remote build node (again: replaces it)", tags, body: RemoteBuildNodeCreate, response: responses({ 201: record }, [400, 422]) },
    },
    async (request, reply) => sendJson(reply, 201, await catalog.putRemoteBuildNode({ xname: request.body.xname })),
  );

  app.delete("/remote-build-nodes", { schema: { summary: "Delete every remote build node", tags, response: responses({ 204: empty }) } }, async (_req, reply) => {
    await catalog.removeAllRemoteBuildNodes();
    return reply.code(204).send();
  });

  // Static before parametric: find-my-way prefers /status over /:xname for GET, as Flask does.
  app.get("/remote-build-nodes/status", { schema: { summary: "Status of every remote build node", tags, response: responses({ 200: { type: "array", items: status } }) } }, async (_req, reply) => {
    const nodes = await catalog.remoteBuildNodes();
    return sendJson(reply, 200, await Promise.all(nodes.map((n) => remoteBuildNodeStatus(n.xname))));
  });

  app.get<{ Params: { xname: string } }>(
    "/remote-build-nodes/status/:xname",
    { schema: { summary: "Status of one remote build node (one object, as the IMS server answers)", tags, params: xnameParam, response: responses({ 200: status }, [404]) } },
    async (request, reply) => {
      const node = await catalog.remoteBuildNode(request.params.xname);
      if (!node) unknownNode(request.params.xname);
      return sendJson(reply, 200, await remoteBuildNodeStatus(node.xname));
    },
  );

  app.get<{ Params: { xname: string } }>(
    "/remote-build-nodes/:xname",
    { schema: { summary: "Describe a remote build node", tags, params: xnameParam, response: responses({ 200: record }, [404]) } },
    async (request, reply) => {
      const node = await catalog.remoteBuildNode(request.params.xname);
      if (!node) unknownNode(request.params.xname);
      return sendJson(reply, 200, node);
    },
  );

  app.delete<{ Params: { xname: string } }>(
    "/remote-build-nodes/:xname",
    { schema: { summary: "Delete a remote build node (hard delete)", tags, params: xnameParam, response: responses({ 204: empty }, [404]) } },
    async (request, reply) => {
      if (!(await catalog.removeRemoteBuildNode(request.params.xname))) unknownNode(request.params.xname);
      return reply.code(204).send();
    },
  );
}
