/**
 * `/objects/{bucket}/{key}?expires=…&signature=…`: the presigned download URLs of a file store
 * (src/store/fs-presign.ts), which point at this service (`--public-url`, by default the listen
 * address). No bearer token: the signature is the credential, as in an S3 presigned URL, so a
 * booting machine, curl or a CSM service fetches them as they are. GET and HEAD, one byte range,
 * S3's headers (ETag, Last-Modified, Accept-Ranges, x-amz-meta-*, among them IMS' md5sum).
 *
 * Refusals are RFC 7807 problems like every other error of this service (403 FORBIDDEN for a
 * changed or expired URL, 404, 416), not S3's XML: the clients of these URLs read the status, and
 * Kiln's own client turns a problem into its message. An S3 store's URLs point at the S3 server,
 * so with one every URL here is 404.
 */
import type { Readable } from "node:stream";
import type { FastifyInstance } from "fastify";
import { BUCKETS } from "../../catalog/objects.js";
import { answerSignedObject } from "../../store/fs-presign.js";
import { FsStore } from "../../store/fs-store.js";
import { ObjectNotFound } from "../../store/object-store.js";
import { apiError } from "../problem.js";
import { responses } from "./common.js";

const binary = { type: "string", format: "binary" };

/** Registered with prefix `/objects` (and `/apis/ims/objects`): what fs-presign signs below publicUrl. */
export async function objectRoutes(app: FastifyInstance): Promise<void> {
  app.route<{ Params: { bucket: string; "*": string } }>({
    method: ["GET", "HEAD"],
    url: "/:bucket/*",
    config: { open: true },
    schema: {
      summary: "Download an object by a presigned URL of a file store; no token (Kiln)",
      description:
        "The URLs GET /v3/images/{id}/urls hands out when the store is a directory. The signature covers bucket, key and expiry; a changed or expired URL is 403. Range: one byte range (206, or 416). Headers as S3's GET: ETag, Last-Modified, Accept-Ranges, x-amz-meta-md5sum.",
      tags: ["kiln"],
      params: { type: "object", properties: { bucket: { type: "string", description: `${BUCKETS.join(" or ")}` } }, required: ["bucket"] },
      querystring: {
        type: "object",
        properties: {
          expires: { type: "string", description: "when the URL expires (Unix time, seconds)" },
          signature: { type: "string", description: "HMAC-SHA256 of method, bucket, key and expires, with the store's signing key" },
        },
      },
      security: [],
      produces: "application/octet-stream",
      response: responses({ 200: binary, 206: { ...binary, description: "Partial Content (a Range)" } }, [403, 404, 416]),
    },
    async handler(request, reply) {
      const store = app.store;
      if (!(store instanceof FsStore)) {
        throw apiError("NOT_FOUND", `no object URLs here: the store is ${store.url}, whose presigned URLs point at the S3 server itself`);
      }
      // The raw path and query below /objects/, percent-encoding and all: what was signed.
      const target = request.url.slice(request.url.indexOf("/objects/") + "/objects/".length);
      const answer = await answerSignedObject(store, target, request.method, request.headers.range);
      if (!answer.ok) {
        reply.headers(answer.headers); // Content-Range of a 416
        switch (answer.status) {
          case 403:
            throw apiError("FORBIDDEN", `presigned URL refused: ${answer.reason}; ask for a new one (GET /v3/images/{id}/urls)`);
          case 404:
            throw apiError("NOT_FOUND", `no object ${request.params.bucket}/${request.params["*"]}`);
          case 405:
            throw apiError("METHOD_NOT_ALLOWED", `${request.method}: ${answer.reason}`);
          case 416:
            throw apiError("RANGE_NOT_SATISFIABLE", answer.reason);
        }
      }
      let body: Readable | undefined;
      try {
        body = await answer.body?.();
      } catch (e) {
        if (e instanceof ObjectNotFound) throw apiError("NOT_FOUND", `no object ${e.bucket}/${e.key}`); // deleted since head()
        throw e;
      }
      return reply.code(answer.status).headers(answer.headers).send(body);
    },
  });
}
