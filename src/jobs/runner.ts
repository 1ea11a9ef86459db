/**
 * What a job type's code gets from the worker, and which code runs each IMS job type.
 *
 * A runner moves its job through statuses with setStatus (which refuses once the job was
 * cancelled), records Kiln's additions with setKiln, and returns normally for `success` or
 * throws for `error`: the worker writes the final status, with the thrown message as the reason.
 * The customize job (SSH shells, docs/customize.md) is one more runner: its `waiting_on_user` status and
 * its session (job-session.ts) live inside it; the worker needs no change.
 */
import type { Catalog } from "../catalog/catalog.js";
import type { JobKiln, JobRecord, JobStatus, JobType } from "../catalog/records.js";
import type { ObjectStore } from "../store/object-store.js";
import { runCreateJob } from "./create-job.js";
import { runCustomizeJob } from "./customize-job.js";
import type { JobLog } from "./job-log.js";

/** What the service configures for every job a worker runs. */
export interface JobSettings {
  /** The engine's layer and package cache. */
  cacheDir: string;
  verify: "recipe" | "always" | "never";
  maxRecipeSize: number;
  /** Where customize and debug sessions listen, how they are advertised, and their timeout. */
  session: SessionSettings;
  /** Site CA certificates (PEM files) every produced image trusts. */
  siteCas: string[];
  /** GnuPG key (a secret key file or a key id) that signs the SHA256SUMS of every image a job makes (--sign-key); none: unsigned. */
  signKey?: string;
}

export interface JobContext extends JobSettings {
  job: JobRecord;
  catalog: Catalog;
  store: ObjectStore;
  log: JobLog;
  /** Fires when the job is cancelled (API) or the worker stops. */
  signal: AbortSignal;
  /** This job's own folder (removed when the job ends). */
  workDir: string;
  setStatus(status: JobStatus): Promise<void>;
  setKiln(patch: Partial<JobKiln>): Promise<void>;
  setResult(imageId: string): Promise<void>;
}

export interface SessionSettings {
  /** Address the session's SSH server binds (a free port is picked per session). */
  listen: string;
  /** connection_info.customer_access.host */
  host: string;
  /** connection_info["cluster.local"].host; undefined: the worker's first non-loopback IPv4. */
  clusterHost: string | undefined;
  /** A connection not logged in after this long is closed. */
  loginGraceSeconds: number;
  timeoutSeconds: number;
}

export type JobRunner = (ctx: JobContext) => Promise<void>;

export const JOB_RUNNERS: Partial<Record<JobType, JobRunner>> = {
  create: runCreateJob,
  customize: runCustomizeJob,
};
