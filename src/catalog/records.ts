/**
 * The IMS records as the Cray IMS server stores and returns them (docs/architecture.md#ims-behaviour-kiln-follows), plus Kiln's
 * additions, which live under a `kiln` key of job records so IMS clients can ignore them.
 */

export const ARCHES = ["x86_64", "aarch64"] as const;
export type Arch = (typeof ARCHES)[number];

/** IMS' recipe types, plus `kiln` (a tarball with recipe.yaml at its root). */
export const RECIPE_TYPES = ["kiwi-ng", "packer", "kiln"] as const;
export type RecipeType = (typeof RECIPE_TYPES)[number];

/**
 * IMS' distributions plus the Debian releases Kiln bootstraps with mmdebstrap. Kiln builds only
 * Debian roots itself (or imports an image of any distribution); the IMS values stay valid for
 * kiwi-ng records.
 */
export const LINUX_DISTRIBUTIONS = ["sles12", "sles15", "centos7", "debian11", "debian12", "debian13"] as const;
export type LinuxDistribution = (typeof LINUX_DISTRIBUTIONS)[number];

/** Debian codenames and the linux_distribution value each means. */
export const DEBIAN_RELEASES: Record<string, LinuxDistribution> = { bullseye: "debian11", bookworm: "debian12", trixie: "debian13" };

export const JOB_TYPES = ["create", "customize"] as const;
export type JobType = (typeof JOB_TYPES)[number];

/** The server's STATUS_TYPES (models/jobs.py), packaging_artifacts included (missing in the spec). */
export const JOB_STATUSES = ["creating", "fetching_image", "fetching_recipe", "waiting_for_repos", "building_image", "packaging_artifacts", "waiting_on_user", "error", "success"] as const;
export type JobStatus = (typeof JOB_STATUSES)[number];
export const FINAL_STATUSES: readonly JobStatus[] = ["error", "success"];

export interface ArtifactLink {
  path: string;
  etag: string;
  type: "s3";
}

export interface RecipeRecord {
  id: string;
  created: string;
  name: string;
  recipe_type: RecipeType;
  linux_distribution: LinuxDistribution;
  link: ArtifactLink | null;
  template_dictionary: Array<{ key: string; value: string }>;
  require_dkms: boolean;
  arch: Arch;
  deleted?: string;
}

export interface ImageRecord {
  id: string;
  created: string;
  name: string;
  link: ArtifactLink | null;
  arch: Arch;
  metadata: Record<string, string>;
  deleted?: string;
  /** Kiln's additions, for images Kiln's jobs made. */
  kiln?: ImageKiln;
}

export interface PackageDiff {
  added: Array<{ name: string; version: string }>;
  removed: Array<{ name: string; version: string }>;
  changed: Array<{ name: string; from: string; to: string }>;
}

export interface ImageKiln {
  job_id: string | null;
  /** The image a customize job started from. */
  source_image_id: string | null;
  /** The kernel flavors and the packages they came from (a customize job rebuilds their initramfs from these). */
  flavors: Array<{ flavor: string; kpackage: string; kernel_version: string }>;
  /** Packages added, removed and changed against source_image_id. */
  package_diff: PackageDiff | null;
  /**
   * The recipe the image was built from (its name and the sha256 of the recipe.yaml the job
   * built), which its provenance.json must name (`kiln attest verify IMAGE_ID`); a customize
   * job's image carries its source's. Absent on images made before Kiln recorded it.
   */
  recipe?: { name: string; sha256: string };
  /**
   * The sha256 of every artifact the job published, by its out-dir path (as SHA256SUMS and the
   * provenance name them): what binds the signed set in the store to this image, since a store
   * writer can put another image's validly signed set under its keys (`kiln attest verify
   * IMAGE_ID`, docs/attest.md#what-is-bound-to-what). Absent on images made before Kiln recorded it.
   */
  artifact_sha256?: Record<string, string>;
  /**
   * The simplestreams label the image is published under: `candidate` when its job succeeded,
   * another after `POST /v3/images/{id}/promote`. Absent on images made before labels existed.
   */
  label?: string;
  /**
   * Bytes of every artifact the job uploaded (the manifest itself not counted): what the image
   * costs in the store. Absent on images made before Kiln recorded it, and on images POSTed by hand.
   */
  size?: number;
  /**
   * The boots of the build's verify stage (out/result.json's `verify`), each with the s3 path of
   * its serial log, uploaded beside the artifacts (listed in the manifest, so it is deleted,
   * undeleted and purged with them). `[]`: the job verified nothing (--verify never, or a recipe
   * that asks for no boot). Absent on images made before Kiln recorded it.
   */
  verify?: ImageVerify[];
}

/** One boot of an image's verify stage; the fields are result.json's, `log` an s3 path or null. */
export interface ImageVerify {
  flavor: string;
  target?: string;
  ok: boolean;
  seconds: number;
  cached?: boolean;
  reason?: string;
  log: string | null;
}

export interface PublicKeyRecord {
  id: string;
  created: string;
  name: string;
  public_key: string;
  deleted?: string;
}

export interface SshContainer {
  name: string;
  jail: boolean;
  status: string;
  connection_info: Record<string, { host: string; port: number }>;
}

/** Kiln's additions to a job record. */
export interface JobKiln {
  /** Why the job ended `error`, in words an operator can act on. */
  error: string | null;
  /** The worker running (or that ran) it. */
  worker: string | null;
  /** 1 for the first run; more when a job whose worker died was queued again. */
  attempt: number;
  started: string | null;
  ended: string | null;
  /** Stage timings and cache hits of the build, as in result.json. */
  stages: Array<{ name: string; key: string; cached: boolean; seconds: number }>;
  cache_hits: number;
  /** Seconds spent in each job status, and when the current one began (ISO-8601, UTC). */
  status_seconds: Record<string, number>;
  status_since: string | null;
  cancel_requested: boolean;
  /** A session ended through the API (POST /v3/jobs/{id}/end-session): the marker it stands for. */
  session_end?: "complete" | "failed" | null;
  /** The session's SSH host key fingerprint, for the operator to check on first connect. */
  ssh_host_key?: string | null;
  /** The failed stage a debug shell is open on. */
  debug_stage?: string | null;
  /** Where the job's log is served. */
  log: string;
}

export interface JobRecord {
  id: string;
  created: string;
  job_type: JobType;
  artifact_id: string;
  public_key_id: string;
  image_root_archive_name: string;
  enable_debug: boolean;
  build_env_size: number;
  job_mem_size: number;
  kernel_file_name: string;
  initrd_file_name: string;
  kernel_parameters_file_name: string;
  ssh_containers: SshContainer[];
  require_dkms: boolean;
  status: JobStatus;
  resultant_image_id: string | null;
  arch: Arch;
  kubernetes_job: string | null;
  kubernetes_service: string | null;
  kubernetes_configmap: string | null;
  kubernetes_pvc: string | null;
  kubernetes_secret: string | null;
  kubernetes_namespace: string | null;
  remote_build_node: string;
  kiln: JobKiln;
}

export type RecordKind = "recipes" | "images" | "public-keys" | "jobs";

export interface RecordOf {
  recipes: RecipeRecord;
  images: ImageRecord;
  "public-keys": PublicKeyRecord;
  jobs: JobRecord;
}

/**
 * IMS' `created`/`deleted` format: naive ISO-8601 with microseconds and no zone
 * (marshmallow's dump of datetime.now(); docs/architecture.md#ims-behaviour-kiln-follows). Kiln writes UTC.
 */
export function imsTime(d: Date = new Date()): string {
  return d.toISOString().replace("Z", "000");
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isUuid(s: string): boolean {
  return UUID.test(s);
}

/**
 * IMS' RemoteBuildNodeRecord (`models/remote_build_nodes.py`): a node keyed by its xname, nothing
 * else. Kept for IMS clients; Kiln's own build capacity is `kiln worker` processes, not these.
 */
export interface RemoteBuildNodeRecord {
  xname: string;
}

/**
 * IMS' RemoteNodeStatus: computed when asked, never stored. IMS SSHes to the node as root, runs
 * `uname -i`, `which podman` and counts `/tmp/ims_*`; `numCurrentJobs` -1 means unknown. Kiln
 * adds `kiln.reason`: why it does not run jobs on the node.
 */
export interface RemoteBuildNodeStatus {
  xname: string;
  sshStatus: string;
  podmanStatus: string;
  nodeArch: string;
  numCurrentJobs: number;
  ableToRunJobs: boolean;
  kiln: { reason: string };
}
