/**
 * The HTTP service: a tree of Fastify plugins. `kiln serve` listens on what buildApp returns;
 * tests call inject() on it. Nothing about building lives here: job routes put jobs in the queue
 * and workers run them (src/jobs/).
 *
 *   problemDetails   RFC 7807 for every error, 404/405 for unknown routes and methods
 *   services         app.catalog, app.store, app.queue, app.settings (decorators)
 *   ui               the web console's files at /ui/ (open) and a browser's GET / sent there
 *   auth             bearer tokens with roles; health and version are open
 *   metrics          GET /metrics (Prometheus; --metrics says who may scrape) and request timing
 *   openapi          GET /openapi.json, built from the routes' own schemas
 *   imsRoutes        the IMS API (v3, v2 and unversioned), once at /apis/ims and once at /
 *   objectRoutes     presigned download URLs of a file store, at /objects/ (and /apis/ims/objects/)
 */
import Fastify, { type FastifyInstance, type FastifyServerOptions } from "fastify";
import fp from "fastify-plugin";
import type { Catalog } from "../catalog/catalog.js";
import type { JobQueue } from "../jobs/queue.js";
import type { ObjectStore } from "../store/object-store.js";
import { authPlugin } from "./auth.js";
import { Metrics, metricsPlugin, type MetricsAccess } from "./metrics.js";
import { streamsPlugin, type StreamsOptions } from "./streams.js";
import { openapiPlugin } from "./openapi.js";
import { clientErrorProblem, frameworkProblem, problemDetails } from "./problem.js";
import { imsRoutes } from "./routes/ims.js";
import { objectRoutes } from "./routes/objects.js";
import { SHARED_SCHEMAS } from "./schemas.js";
import type { TokenVerifier } from "./tokens.js";
import { uiPlugin } from "./ui.js";

export interface AppSettings {
  /** Largest recipe archive accepted on upload (bytes, compressed). */
  maxRecipeSize: number;
  /** Where uploads are checked before they go to the store. */
  scratchDir: string;
  /** Seconds after which a silent worker counts as dead (for GET /v3/workers). */
  workerTimeout: number;
}

export interface AppDeps {
  catalog: Catalog;
  store: ObjectStore;
  queue: JobQueue;
  tokens: TokenVerifier;
  settings: AppSettings;
  logger?: FastifyServerOptions["logger"];
  https?: { cert: Buffer; key: Buffer };
  /** This app's metrics (kiln serve shares them with its worker and store); a fresh set when absent. */
  metrics?: Metrics;
  /** Who may scrape /metrics (--metrics); default open. */
  metricsAccess?: MetricsAccess;
  /** Where the web console's built files are (default dist/ui/; tests point elsewhere). */
  uiDir?: string;
  /** The MAAS boot source (--streams …); off when absent. */
  streams?: StreamsOptions;
}

declare module "fastify" {
  interface FastifyInstance {
    catalog: Catalog;
    store: ObjectStore;
    queue: JobQueue;
    settings: AppSettings;
  }
}

/** Largest JSON body: IMS records are small; a manifest is 1 MiB at most and lives in the store. */
export const JSON_BODY_LIMIT = 1024 * 1024;

const services = fp(
  async (app: FastifyInstance, deps: AppDeps) => {
    app.decorate("catalog", deps.catalog);
    app.decorate("store", deps.store);
    app.decorate("queue", deps.queue);
    app.decorate("settings", deps.settings);
  },
  { name: "services" },
);

export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const options: FastifyServerOptions = {
    logger: deps.logger ?? false,
    bodyLimit: JSON_BODY_LIMIT,
    routerOptions: { ignoreTrailingSlash: true },
    forceCloseConnections: true,
    // IMS rejects unknown fields (marshmallow unknown=RAISE): never strip them, never coerce.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: true, allErrors: true } },
    // What the router and Node's HTTP parser refuse is an RFC 7807 problem like everything else.
    frameworkErrors: frameworkProblem,
    clientErrorHandler: clientErrorProblem,
  };
  // Fastify's types split HTTP and HTTPS servers; the routes do not care which one serves them.
  const app = (deps.https ? Fastify({ ...options, https: deps.https } as FastifyServerOptions) : Fastify(options)) as unknown as FastifyInstance;
  for (const s of SHARED_SCHEMAS) app.addSchema(s);
  // IMS (Flask) takes a GET or DELETE with `Content-Type: application/json` and no body, and
  // scripts set the header on every call; Fastify's parser refuses an empty JSON body. A
  // POST/PATCH with none still gets requireBody's 400.
  const parseJson = app.getDefaultJsonParser("error", "error");
  app.addContentTypeParser("application/json", { parseAs: "string" }, (request, body, done) => {
    if (body === "" && (request.method === "GET" || request.method === "DELETE" || request.method === "HEAD" || request.method === "OPTIONS")) return done(null, undefined);
    return parseJson(request, body as string, done);
  });
  // Routes send the JSON text the catalog stores; response schemas document, they do not
  // serialize (and compiling ~200 serializers would cost seconds at start).
  app.setSerializerCompiler(() => (data) => JSON.stringify(data));
  await app.register(problemDetails);
  await app.register(services, deps);
  // Before auth: its redirect of a browser's GET / must not meet the token check.
  await app.register(uiPlugin, deps.uiDir ? { dir: deps.uiDir } : {});
  await app.register(authPlugin, { tokens: deps.tokens });
  const metrics = deps.metrics ?? new Metrics();
  metrics.watchCatalog(deps.catalog, deps.settings.workerTimeout);
  // Before the routes: its onResponse hook times every one of them.
  await app.register(metricsPlugin, { metrics, access: deps.metricsAccess ?? "open" });
  await app.register(openapiPlugin);
  if (deps.streams) await app.register(streamsPlugin, deps.streams);
  for (const prefix of ["/apis/ims", ""]) {
    await app.register(imsRoutes, { prefix });
    await app.register(objectRoutes, { prefix: `${prefix}/objects` });
  }
  return app;
}
