/**
 * JSON Schemas of the API's bodies: one definition per record, used by Fastify to validate
 * requests (unknown fields rejected, as IMS' marshmallow schemas do with unknown=RAISE) and to
 * describe responses, and collected into /openapi.json. Field rules follow the IMS server
 * (docs/architecture.md#ims-behaviour-kiln-follows), where it differs from the spec.
 */
import { ARCHES, JOB_STATUSES, JOB_TYPES, LINUX_DISTRIBUTIONS, RECIPE_TYPES } from "../catalog/records.js";

type Schema = Record<string, unknown>;

const str = (extra: Schema = {}): Schema => ({ type: "string", ...extra });
const nonEmpty = (description: string): Schema => str({ minLength: 1, description });
const uuid = (description: string): Schema => str({ format: "uuid", description });
const obj = (properties: Record<string, Schema>, required: string[] = [], extra: Schema = {}): Schema => ({
  type: "object",
  properties,
  ...(required.length ? { required } : {}),
  additionalProperties: false,
  ...extra,
});
const timestamp = (description: string): Schema => str({ description: `${description} (ISO-8601, no zone, UTC)`, examples: ["2024-10-18T17:15:08.436814"] });

export const ArtifactLink = obj(
  {
    path: nonEmpty("s3://<bucket>/<key> of the object"),
    etag: str({ description: "the object's S3 ETag, quotes stripped (default \"\")" }),
    type: { type: "string", enum: ["s3"], description: "only s3" },
  },
  ["path", "type"],
  { $id: "ArtifactLink", description: "Where an artifact is stored" },
);

const linkOrNull: Schema = { anyOf: [{ $ref: "ArtifactLink#" }, { type: "null" }] };
const arch: Schema = { type: "string", enum: [...ARCHES], description: "CPU architecture" };
const templateDictionary: Schema = { type: "array", items: obj({ key: str(), value: str() }, ["key", "value"]), description: "key/value pairs for templated recipe files" };

// --- public keys ------------------------------------------------------------------------------

export const PublicKeyCreate = obj({ name: nonEmpty("a name for the key"), public_key: nonEmpty('the key, as in authorized_keys: "ssh-ed25519 AAAA… comment"') }, ["name", "public_key"]);
export const PublicKeyRecord = {
  $id: "PublicKeyRecord",
  type: "object",
  properties: { id: uuid("record id"), created: timestamp("when it was created"), name: str(), public_key: str() },
};
export const DeletedPublicKeyRecord = { $id: "DeletedPublicKeyRecord", type: "object", properties: { ...PublicKeyRecord.properties, deleted: timestamp("when it was deleted") } };

// --- recipes ----------------------------------------------------------------------------------

export const RecipeCreate = obj(
  {
    name: nonEmpty("a name for the recipe"),
    recipe_type: { type: "string", enum: [...RECIPE_TYPES], description: "kiln: a tarball with recipe.yaml at its root (Kiln builds it); kiwi-ng, packer: IMS' types (records only)" },
    linux_distribution: { type: "string", enum: [...LINUX_DISTRIBUTIONS], description: "the distribution the recipe builds; debian11/12/13 are Kiln's additions" },
    link: linkOrNull,
    template_dictionary: { ...templateDictionary, default: [] },
    require_dkms: { type: "boolean", default: true },
    arch: { ...arch, default: "x86_64" },
  },
  ["name", "recipe_type", "linux_distribution"],
);
export const RecipePatch = obj(
  { link: { $ref: "ArtifactLink#" }, arch, require_dkms: { type: "boolean" }, template_dictionary: templateDictionary },
  [],
);
export const RecipeRecord = {
  $id: "RecipeRecord",
  type: "object",
  properties: {
    id: uuid("record id"),
    created: timestamp("when it was created"),
    name: str(),
    recipe_type: str(),
    linux_distribution: str(),
    link: linkOrNull,
    template_dictionary: templateDictionary,
    require_dkms: { type: "boolean" },
    arch: str(),
  },
};
export const DeletedRecipeRecord = { $id: "DeletedRecipeRecord", type: "object", properties: { ...RecipeRecord.properties, deleted: timestamp("when it was deleted") } };

// --- images -----------------------------------------------------------------------------------

const metadataMap: Schema = { type: "object", additionalProperties: { type: "string" }, description: "tags: a map of string to string" };
export const ImageCreate = obj(
  {
    name: nonEmpty("a name for the image"),
    link: linkOrNull,
    arch: { ...arch, default: "x86_64" },
    metadata: { ...metadataMap, default: {}, description: 'tags; {"key": k, "value": v} is read as {k: v}, as IMS does' },
  },
  ["name"],
);
export const ImagePatch = obj(
  {
    link: { $ref: "ArtifactLink#" },
    arch,
    metadata: obj({ operation: { type: "string", enum: ["set", "remove"] }, key: nonEmpty("tag name"), value: str() }, ["operation", "key"], {
      description: "one tag operation per request",
    }),
  },
  [],
);
export const ImageRecord = {
  $id: "ImageRecord",
  type: "object",
  properties: {
    id: uuid("record id"),
    created: timestamp("when it was created"),
    name: str(),
    link: linkOrNull,
    arch: str(),
    metadata: { type: "object", additionalProperties: { type: "string" } },
    kiln: {
      type: "object",
      description: "Kiln's additions, for images Kiln's jobs made: the job, the image a customize job started from, the kernel flavors, and the package changes against that image",
      properties: {
        job_id: { type: ["string", "null"] },
        source_image_id: { type: ["string", "null"] },
        label: { type: "string", description: "the simplestreams label it is published under: candidate when its job made it, another after promote" },
        recipe: { type: "object", description: "the recipe it was built from (a customize job's image: its source's), which its provenance.json names", properties: { name: str(), sha256: str() } },
        flavors: { type: "array", items: { type: "object", properties: { flavor: str(), kpackage: str(), kernel_version: str() } } },
        artifact_sha256: {
          type: "object",
          description: "the sha256 of every artifact its job published, by out-dir path (as SHA256SUMS names them): what `kiln attest verify` binds the stored files to",
          additionalProperties: { type: "string" },
        },
        size: { type: "integer", description: "bytes of every artifact the job uploaded" },
        verify: {
          type: "array",
          description: "the boots of the build's verify stage; [] when the job verified nothing",
          items: {
            type: "object",
            properties: {
              flavor: str(),
              target: { type: "string", description: "pxe, qcow2-bios, qcow2-uefi, iso-bios, iso-uefi, iso-seeded:<name>" },
              ok: { type: "boolean" },
              seconds: { type: "number" },
              cached: { type: "boolean", description: "not booted: an earlier boot of the same bytes passed" },
              reason: { type: "string", description: "why it failed" },
              log: { type: ["string", "null"], description: "s3 path of its serial console log (GET /v3/artifacts/{bucket}/{key})" },
            },
          },
        },
        package_diff: {
          anyOf: [
            {
              type: "object",
              properties: {
                added: { type: "array", items: { type: "object", properties: { name: str(), version: str() } } },
                removed: { type: "array", items: { type: "object", properties: { name: str(), version: str() } } },
                changed: { type: "array", items: { type: "object", properties: { name: str(), from: str(), to: str() } } },
              },
            },
            { type: "null" },
          ],
        },
      },
    },
  },
};
export const DeletedImageRecord = { $id: "DeletedImageRecord", type: "object", properties: { ...ImageRecord.properties, deleted: timestamp("when it was deleted") } };

// --- jobs -------------------------------------------------------------------------------------

// `cray ims jobs create --ssh-containers-jail true` sends `[{"jail": true}]` with no name.
const sshContainerIn = obj({ name: { ...nonEmpty("container name"), default: "customize" }, jail: { type: "boolean", default: false } }, []);
export const JobCreate = obj(
  {
    job_type: { type: "string", enum: [...JOB_TYPES] },
    artifact_id: uuid("the recipe (create) or image (customize) to start from"),
    public_key_id: uuid("the public key allowed into SSH shells"),
    image_root_archive_name: nonEmpty("name of the resulting image"),
    enable_debug: { type: "boolean", default: false },
    build_env_size: { type: "integer", minimum: 1, default: 60, description: "GiB (IMS; Kiln records it)" },
    job_mem_size: { type: "integer", minimum: 1, default: 8, description: "GiB (IMS; Kiln records it)" },
    kernel_file_name: nonEmpty("default vmlinuz (x86_64) or Image (aarch64)"),
    initrd_file_name: { ...nonEmpty("default initrd"), default: "initrd" },
    kernel_parameters_file_name: { ...nonEmpty("default kernel-parameters"), default: "kernel-parameters" },
    ssh_containers: { type: "array", items: sshContainerIn },
    require_dkms: { type: "boolean" },
  },
  ["job_type", "artifact_id", "public_key_id", "image_root_archive_name"],
);
export const JobPatch = obj({ status: { type: "string", enum: [...JOB_STATUSES] }, resultant_image_id: { anyOf: [uuid("the image the job made"), { type: "null" }] } }, []);

const jobKiln: Schema = {
  type: "object",
  description: "Kiln's additions: why it failed, who ran it, stage timings and cache hits",
  properties: {
    error: { type: ["string", "null"] },
    worker: { type: ["string", "null"] },
    attempt: { type: "integer" },
    started: { type: ["string", "null"] },
    ended: { type: ["string", "null"] },
    stages: { type: "array", items: { type: "object", properties: { name: str(), key: str(), cached: { type: "boolean" }, seconds: { type: "number" } } } },
    cache_hits: { type: "integer" },
    status_seconds: { type: "object", additionalProperties: { type: "number" } },
    status_since: { type: ["string", "null"] },
    cancel_requested: { type: "boolean" },
    session_end: { type: ["string", "null"], description: "complete or failed, when the session was ended through the API" },
    ssh_host_key: { type: ["string", "null"], description: "the session's SSH host key fingerprint (SHA256:…), to check on first connect" },
    debug_stage: { type: ["string", "null"], description: "the failed stage a debug shell is open on" },
    log: str(),
  },
};
export const JobRecord = {
  $id: "JobRecord",
  type: "object",
  properties: {
    id: uuid("record id"),
    created: timestamp("when it was created"),
    job_type: str(),
    artifact_id: str(),
    public_key_id: str(),
    image_root_archive_name: str(),
    enable_debug: { type: "boolean" },
    build_env_size: { type: "integer" },
    job_mem_size: { type: "integer" },
    kernel_file_name: str(),
    initrd_file_name: str(),
    kernel_parameters_file_name: str(),
    ssh_containers: { type: "array", items: { type: "object", properties: { name: str(), jail: { type: "boolean" }, status: str(), connection_info: { type: "object", additionalProperties: { type: "object", properties: { host: str(), port: { type: "integer" } } } } } } },
    require_dkms: { type: "boolean" },
    status: { type: "string", enum: [...JOB_STATUSES] },
    resultant_image_id: { type: ["string", "null"] },
    arch: str(),
    kubernetes_job: { type: ["string", "null"] },
    kubernetes_service: { type: ["string", "null"] },
    kubernetes_configmap: { type: ["string", "null"] },
    kubernetes_pvc: { type: ["string", "null"] },
    kubernetes_secret: { type: ["string", "null"] },
    kubernetes_namespace: { type: ["string", "null"] },
    remote_build_node: str(),
    kiln: jobKiln,
  },
};

// --- remote build nodes (v3 only) -------------------------------------------------------------

const xname = nonEmpty("xname of the node, e.g. x3000c1s10b1n0");
export const RemoteBuildNodeCreate = obj({ xname }, ["xname"]);
export const RemoteBuildNodeRecord = { $id: "RemoteBuildNodeRecord", type: "object", description: "A remote build node, keyed by xname (IMS)", properties: { xname } };
export const RemoteBuildNodeStatus = {
  $id: "RemoteBuildNodeStatus",
  type: "object",
  description: "What is known about a registered node, computed when asked. Kiln runs no jobs on remote build nodes: ableToRunJobs is always false, kiln.reason says why",
  properties: {
    xname,
    sshStatus: str({ description: "IMS: the SSH login; Kiln: whether an SSH server on port 22 sends its banner (no login: Kiln holds no key)" }),
    podmanStatus: str({ description: "IMS: podman on the node; Kiln: not checked" }),
    nodeArch: str({ description: "x86_64, aarch64, or Unknown" }),
    numCurrentJobs: { type: "integer", description: "IMS jobs on the node; -1: unknown" },
    ableToRunJobs: { type: "boolean", description: "whether jobs may be scheduled on the node" },
    kiln: { type: "object", properties: { reason: str({ description: "why Kiln does not run jobs there" }) } },
  },
};
export const xnameParam = { type: "object", properties: { xname: { type: "string", description: "the node's xname" } }, required: ["xname"] };

export const Undelete = obj({ operation: { type: "string", enum: ["undelete"] } }, ["operation"]);

export const Problem = {
  $id: "Problem",
  type: "object",
  description: "RFC 7807 problem details",
  properties: {
    type: str(),
    title: str(),
    status: { type: "integer" },
    detail: str(),
    code: str({ description: "Kiln's error code (docs/errors.md)" }),
    errors: { type: "array", items: { type: "object", properties: { path: str(), message: str() } } },
  },
};

/** Schemas registered with Fastify by $id, so routes can $ref them and /openapi.json lists them. */
export const SHARED_SCHEMAS = [ArtifactLink, PublicKeyRecord, DeletedPublicKeyRecord, RecipeRecord, DeletedRecipeRecord, ImageRecord, DeletedImageRecord, JobRecord, RemoteBuildNodeRecord, RemoteBuildNodeStatus, Problem];

export const idParam = { type: "object", properties: { id: { type: "string" } }, required: ["id"] };
