/**
 * What a job type's code gets from the worker, and which code runs each IMS job type.
 *
 * A runner moves its job through statuses with setStatus (which refuses once the job was
 * cancelled), records Kiln's additions with setKiln, and returns normally for `success` or
 * throws for `error`: the worker writes the final status, with the thrown message as the reason.
 * The customize job (SSH shells, DESIGN §8) plugs in here as one more runner: its
 * `waiting_on_user` status and its session live inside its runner; the worker needs no change.
 */
import type { Catalog } from "../catalog/catalog.js";
import type { JobKiln, JobRecord, JobStatus, JobType } from "../catalog/records.js";
import type { ObjectStore } from "../store/object-store.js";
import { runCreateJob } from "./create-job.js";
import type { JobLog } from "./job-log.js";

export interface JobContext {
  job: JobRecord;
  catalog: Catalog;
  store: ObjectStore;
  log: JobLog;
  /** Fires when the job is cancelled (API) or the worker stops. */
  signal: AbortSignal;
  /** This job's own folder (removed when the job ends). */
  workDir: string;
  cacheDir: string;
  verify: "recipe" | "always" | "never";
  maxRecipeSize: number;
  setStatus(status: JobStatus): Promise<void>;
  setKiln(patch: Partial<JobKiln>): Promise<void>;
  setResult(imageId: string): Promise<void>;
}

export type JobRunner = (ctx: JobContext) => Promise<void>;

export const JOB_RUNNERS: Partial<Record<JobType, JobRunner>> = {
  create: runCreateJob,
};
