/**
 * /jobs. POST applies IMS' rules (docs/architecture.md#ims-behaviour-kiln-follows) and hands the job to the queue;
 * workers do the rest. Kiln adds, under v3: GET /jobs/{id}/log (streamed while the job runs) and
 * POST /jobs/{id}/cancel. Stage timings and cache hits are in the record's `kiln` field.
 */
import { randomUUID } from "node:crypto";
import { Readable } from "node:stream";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { headOrUndefined, parseS3Path } from "../../catalog/objects.js";
import { FINAL_STATUSES, JOB_STATUSES, JOB_TYPES, imsTime, type Arch, type JobRecord, type JobStatus, type JobType, type SshContainer } from "../../catalog/records.js";
import { describeArches, Reaper } from "../../jobs/worker.js";
import { apiError } from "../problem.js";
import { JobCreate, JobPatch, idParam } from "../schemas.js";
import { empty, notFound, requireBody, responses, sendJson } from "./common.js";
import { laneOf } from "../../jobs/queue.js";

interface JobBody {
  job_type: JobType;
  artifact_id: string;
  public_key_id: string;
  image_root_archive_name: string;
  enable_debug: boolean;
  build_env_size: number;
  job_mem_size: number;
  kernel_file_name?: string;
  initrd_file_name: string;
  kernel_parameters_file_name: string;
  ssh_containers?: Array<{ name: string; jail: boolean }>;
  require_dkms?: boolean;
}

/**
 * IMS' `age` filter (v3/resources/jobs.py _age_to_timestamp): a number and a unit w, d, h or m,
 * repeatable, e.g. 1d, 6h, 2w3d, 10min (letters after the unit are ignored). Seconds, or undefined.
 */
export function parseAge(age: string): number | undefined {
  const unit: Record<string, number> = { w: 7 * 86400, d: 86400, h: 3600, m: 60 };
  if (!/^(\d+[wdhm][a-z]*)+$/i.test(age)) return undefined;
  let seconds = 0;
  for (const m of age.matchAll(/(\d+)([wdhm])[a-z]*/gi)) seconds += Number(m[1]) * unit[m[2]!.toLowerCase()]!;
  return seconds;
}

const LOG_POLL_MS = 500;

/** The largest `age` taken (about 100,000 years): 99999999999w would be no Date at all. */
const MAX_AGE_WEEKS = 5_217_000;

export async function jobRoutes(app: FastifyInstance, opts: { version: 2 | 3 }): Promise<void> {
  const { catalog, store, queue } = app;
  const v3 = opts.version === 3;
  const tags = [`jobs v${opts.version}`];
  const record = { $ref: "JobRecord#" };

  app.get("/jobs", { schema: { summary: "List jobs", tags, response: responses({ 200: { type: "array", items: record } }) } }, async (_req, reply) => sendJson(reply, 200, await catalog.listJson("jobs")));

  app.post<{ Body: JobBody }>(
    "/jobs",
    {
      preValidation: requireBody,
      schema: { summary: "Start a job: create (build an image from a recipe) or customize", tags, body: JobCreate, response: responses({ 201: record }, [400, 422]) },
    },
    async (request, reply) => {
      const b = request.body;
      if (b.job_type === "create" && b.ssh_containers !== undefined) throw apiError("BAD_REQUEST", "ssh_containers: create jobs take none (enable_debug adds a debug shell)");
      if ((b.ssh_containers?.length ?? 0) > 1) throw apiError("BAD_REQUEST", "ssh_containers: at most one SSH container per job");
      const artifact = b.job_type === "create" ? await catalog.get("recipes", b.artifact_id) : await catalog.get("images", b.artifact_id);
      const what = b.job_type === "create" ? "recipe" : "image";
      if (!artifact) throw apiError("BAD_REQUEST", `artifact_id: no ${what} with id ${b.artifact_id} (a ${b.job_type} job starts from a ${what})`);
      if (!artifact.link) throw apiError("BAD_REQUEST", `artifact_id: ${what} ${artifact.id} has no link${what === "recipe" ? " (upload its archive first)" : ""}`);
      const where = parseS3Path(artifact.link.path);
      if (!where || !(await headOrUndefined(store, where.bucket, where.key))) {
        throw apiError("REQUEST_INVALID", `artifact_id: ${what} ${artifact.id} links ${artifact.link.path}, which is not in the store`, [{ path: "artifact_id", message: "the linked object does not exist" }]);
      }
      if (!(await catalog.get("public-keys", b.public_key_id))) throw apiError("BAD_REQUEST", `public_key_id: no public key with id ${b.public_key_id}`);
      const arch: Arch = artifact.arch;
      let requireDkms = b.require_dkms ?? (b.job_type === "create" && "require_dkms" in artifact ? artifact.require_dkms : true);
      if (arch === "aarch64") requireDkms = true;
      let containers = b.ssh_containers ?? [];
      if (b.job_type === "create" && b.enable_debug) containers = [{ name: "debug", jail: false }];
      if (b.job_type === "customize" && containers.length === 0) containers = [{ name: "customize", jail: false }];
      const id = randomUUID();
      const job: JobRecord = {
        id,
        created: imsTime(),
        job_type: b.job_type,
        artifact_id: b.artifact_id,
        public_key_id: b.public_key_id,
        image_root_archive_name: b.image_root_archive_name,
        enable_debug: b.enable_debug,
        build_env_size: b.build_env_size,
        job_mem_size: b.job_mem_size,
        kernel_file_name: b.kernel_file_name ?? (arch === "aarch64" ? "Image" : "vmlinuz"),
        initrd_file_name: b.initrd_file_name,
        kernel_parameters_file_name: b.kernel_parameters_file_name,
        ssh_containers: containers.map((c): SshContainer => ({ name: c.name, jail: c.jail ?? false, status: "pending", connection_info: {} })),
        require_dkms: requireDkms,
        status: "creating",
        resultant_image_id: null,
        arch,
        // Kiln runs no Kubernetes objects per job; the fields stay for IMS clients, empty.
        kubernetes_job: null,
        kubernetes_service: null,
        kubernetes_configmap: null,
        kubernetes_pvc: null,
        kubernetes_secret: null,
        kubernetes_namespace: null,
        remote_build_node: "",
        kiln: {
          error: null,
          worker: null,
          attempt: 0,
          started: null,
          ended: null,
          stages: [],
          cache_hits: 0,
          status_seconds: {},
          status_since: new Date().toISOString(),
          cancel_requested: false,
          log: `/v3/jobs/${id}/log`,
        },
      };
      await catalog.insert("jobs", job);
      try {
        await catalog.setJobQueueId(id, await queue.enqueue(id, laneOf(job)));
      } catch (e) {
        await catalog.remove("jobs", id);
        throw e;
      }
      const alive = (await catalog.workers(app.settings.workerTimeout)).filter((w) => w.alive);
      if (!alive.some((w) => w.arches.includes(arch))) {
        await catalog.appendLog(id, `${new Date().toISOString().slice(11, 19)} waiting for a worker that builds ${arch}: ${describeArches(alive)} (it ends error after --arch-wait)\n`);
      }
      return sendJson(reply, 201, job);
    },
  );

  app.delete<{ Querystring: { status?: string | string[]; job_type?: string; age?: string } }>(
    "/jobs",
    {
      schema: {
        summary: "Delete jobs, all or those matching every filter given",
        tags,
        querystring: {
          type: "object",
          properties: {
            status: { anyOf: [{ type: "string" }, { type: "array", items: { type: "string" } }], description: "job status; may repeat" },
            job_type: { type: "string", description: "create or customize" },
            age: { type: "string", description: "only jobs older than this, e.g. 1d, 6h, 2w3d" },
          },
        },
        response: responses({ 204: empty }, [400, 422]),
      },
    },
    async (request, reply) => {
      const q = request.query;
      const statuses = q.status === undefined ? [] : [q.status].flat();
      const bad = statuses.filter((s) => !(JOB_STATUSES as readonly string[]).includes(s));
      if (bad.length) throw apiError("BAD_REQUEST", `status ${bad.map((s) => JSON.stringify(s)).join(", ")}: use ${JOB_STATUSES.join(", ")}`);
      if (q.job_type !== undefined && !(JOB_TYPES as readonly string[]).includes(q.job_type)) throw apiError("BAD_REQUEST", `job_type ${JSON.stringify(q.job_type)}: use ${JOB_TYPES.join(" or ")}`);
      let createdBefore: Date | undefined;
      if (q.age !== undefined) {
        const s = parseAge(q.age);
        if (s === undefined) throw apiError("BAD_REQUEST", `age ${JSON.stringify(q.age)}: use a number and a unit w, d, h or m, e.g. 1d, 6h, 2w3d`);
        if (s > MAX_AGE_WEEKS * 7 * 86400) {
          throw apiError("REQUEST_INVALID", `age ${JSON.stringify(q.age)}: reaches back further than any date; use at most ${MAX_AGE_WEEKS}w`, [{ path: "age", message: `at most ${MAX_AGE_WEEKS}w` }]);
        }
        // No job is older than 1970; an earlier date would be outside what PostgreSQL stores.
        createdBefore = new Date(Math.max(Date.now() - s * 1000, 0));
      }
      for (const j of await catalog.findJobs({ statuses, jobType: q.job_type, createdBefore })) await deleteJob(j);
      return reply.code(204).send();
    },
  );

  app.get<{ Params: { id: string } }>("/jobs/:id", { schema: { summary: "Describe a job", tags, params: idParam, response: responses({ 200: record }, [404]) } }, async (request, reply) => {
    const body = await catalog.getJson("jobs", request.params.id);
    if (!body) notFound("job", request.params.id);
    return sendJson(reply, 200, body);
  });

  app.patch<{ Params: { id: string }; Body: { status?: JobStatus; resultant_image_id?: string | null } }>(
    "/jobs/:id",
    {
      preValidation: requireBody,
      schema: { summary: "Set a job's status or resultant image (IMS' internal route; workers use the catalog directly)", tags, params: idParam, body: JobPatch, response: responses({ 200: record }, [400, 404, 422]) },
    },
    async (request, reply) => {
      const b = request.body;
      const updated = await catalog.update("jobs", request.params.id, (doc) => {
        let next = { ...doc };
        if (b.status !== undefined && b.status !== doc.status) {
          const since = doc.kiln.status_since ? (Date.now() - new Date(doc.kiln.status_since).getTime()) / 1000 : 0;
          const seconds = { ...doc.kiln.status_seconds, [doc.status]: Math.round(((doc.kiln.status_seconds[doc.status] ?? 0) + since) * 10) / 10 };
          next = { ...next, status: b.status, kiln: { ...doc.kiln, status_seconds: seconds, status_since: new Date().toISOString(), ...(FINAL_STATUSES.includes(b.status) ? { ended: imsTime() } : {}) } };
        }
        if (b.resultant_image_id !== undefined) next.resultant_image_id = b.resultant_image_id;
        return next;
      });
      if (!updated) notFound("job", request.params.id);
      return sendJson(reply, 200, updated);
    },
  );

  app.delete<{ Params: { id: string } }>(
    "/jobs/:id",
    { schema: { summary: "Delete a job (a running one is cancelled first)", tags, params: idParam, response: responses({ 204: empty }, [404]) } },
    async (request, reply) => {
      const j = await catalog.get("jobs", request.params.id);
      if (!j) notFound("job", request.params.id);
      await deleteJob(j);
      return reply.code(204).send();
    },
  );

  /** A running job's worker notices the row is gone at its next heartbeat and stops the build. */
  async function deleteJob(j: JobRecord): Promise<void> {
    if (!FINAL_STATUSES.includes(j.status)) await cancel(j, "the job was deleted");
    await catalog.remove("jobs", j.id);
  }

  async function cancel(j: JobRecord, why: string): Promise<JobRecord | undefined> {
    const worker = await catalog.jobWorker(j.id);
    if (worker === null) {
      // Not taken yet: end it here and make sure no worker takes it later.
      const qid = await catalog.jobQueueId(j.id);
      if (qid) await queue.drop(laneOf(j), qid, why);
      return catalog.setJobStatus(j.id, "error", { kiln: { error: `cancelled before a worker took it: ${why}`, cancel_requested: true } });
    }
    const asked = await catalog.update("jobs", j.id, (d) => (FINAL_STATUSES.includes(d.status) ? undefined : { ...d, kiln: { ...d.kiln, cancel_requested: true } }));
    // A worker process that is gone (silent past the worker timeout, or known dead) will never
    // notice: end the job here rather than leave it to the next sweep.
    if (await new Reaper(catalog, queue, { timeoutSeconds: app.settings.workerTimeout, retries: 0 }).reapJob(j.id)) return catalog.get("jobs", j.id);
    return asked;
  }

  if (!v3) return;

  app.post<{ Params: { id: string } }>(
    "/jobs/:id/cancel",
    {
      schema: {
        summary: "Cancel a job (Kiln)",
        description: "A queued job ends `error` at once; a running one when its worker notices (within one heartbeat): the build stops, everything it mounted is released, the job ends `error` with reason cancelled. A job whose worker process is gone (silent for the worker timeout, or known dead) ends `error` at once. 409 when the job already ended.",
        tags: ["kiln"],
        params: idParam,
        response: responses({ 202: record }, [404, 409]),
      },
    },
    async (request, reply) => {
      const j = await catalog.get("jobs", request.params.id);
      if (!j) notFound("job", request.params.id);
      if (FINAL_STATUSES.includes(j.status)) throw apiError("CONFLICT", `job ${j.id} already ended (${j.status})`);
      const updated = await cancel(j, "cancelled through the API");
      return sendJson(reply, 202, updated ?? (await catalog.get("jobs", j.id)));
    },
  );

  app.post<{ Params: { id: string }; Body: { marker?: "complete" | "failed" } | undefined }>(
    "/jobs/:id/end-session",
    {
      schema: {
        summary: "End a job's SSH session (Kiln)",
        description:
          "The same as the operator touching the marker in the session: `complete` (default) packages a new image (a debug shell continues the build from its failed stage), `failed` ends the job `error` with no image. 409 unless the job is waiting_on_user.",
        tags: ["kiln"],
        params: idParam,
        body: { type: "object", additionalProperties: false, properties: { marker: { type: "string", enum: ["complete", "failed"], default: "complete" } } },
        response: responses({ 202: record }, [400, 404, 409, 422]),
      },
    },
    async (request, reply) => {
      const j = await catalog.get("jobs", request.params.id);
      if (!j) notFound("job", request.params.id);
      if (j.status !== "waiting_on_user") throw apiError("CONFLICT", `job ${j.id} has no open session: it is ${j.status}, not waiting_on_user`);
      const marker = request.body?.marker ?? "complete";
      const updated = await catalog.update("jobs", j.id, (d) => (d.status === "waiting_on_user" ? { ...d, kiln: { ...d.kiln, session_end: marker } } : undefined));
      if (!updated) throw apiError("CONFLICT", `job ${j.id} left waiting_on_user meanwhile`);
      return sendJson(reply, 202, updated);
    },
  );

  app.get<{ Params: { id: string }; Querystring: { follow?: string } }>(
    "/jobs/:id/log",
    {
      schema: {
        summary: "The job's log (Kiln)",
        description: "text/plain. While the job runs the response stays open and streams new lines until the job ends (follow=false: only what is there now).",
        tags: ["kiln"],
        params: idParam,
        querystring: { type: "object", properties: { follow: { type: "string", enum: ["true", "false"], description: "keep streaming until the job ends (default true)" } } },
        produces: "text/plain",
        response: responses({ 200: { type: "string" } }, [404]),
      },
    },
    async (request, reply) => {
      const id = request.params.id;
      if (!(await catalog.get("jobs", id))) notFound("job", id);
      const follow = request.query.follow !== "false";
      reply.type("text/plain; charset=utf-8").header("cache-control", "no-store").header("x-content-type-options", "nosniff");
      return reply.send(Readable.from(streamLog(request, id, follow)));
    },
  );

  async function* streamLog(request: FastifyRequest, id: string, follow: boolean): AsyncGenerator<string> {
    let after = 0;
    let closed = false;
    request.raw.on("close", () => (closed = true));
    for (;;) {
      // Read the status before the chunks: a job that ended has written its last line by then.
      const job = follow ? await catalog.get("jobs", id) : undefined;
      const ended = !follow || !job || FINAL_STATUSES.includes(job.status);
      for (;;) {
        const chunks = await catalog.readLog(id, after);
        if (chunks.length === 0) break;
        after = chunks[chunks.length - 1]!.seq;
        yield chunks.map((c) => c.text).join("");
      }
      if (ended || closed) return;
      await new Promise((r) => setTimeout(r, LOG_POLL_MS));
    }
  }
}
