/**
 * Job records as a worker leaves them, written straight into a catalog before `kiln serve` opens
 * it: the API makes jobs only as `creating`, and only a real build fills in stages, a session or a
 * long log. The web console's browser test and bench/ui use these to show those pages without a
 * build. Inserted rows have no worker column, so the service's reaper leaves them alone.
 */
import { createHash, randomUUID } from "node:crypto";
import type { Catalog } from "../../src/catalog/catalog.js";
import { BOOT_IMAGES_BUCKET, s3Path } from "../../src/catalog/objects.js";
import { imsTime, type ImageRecord, type ImageVerify, type JobRecord } from "../../src/catalog/records.js";
import type { ObjectStore } from "../../src/store/object-store.js";

export function jobRecord(over: Partial<Omit<JobRecord, "kiln">> & { kiln?: Partial<JobRecord["kiln"]> } = {}): JobRecord {
  const id = over.id ?? randomUUID();
  const { kiln, ...rest } = over;
  return {
    id,
    created: imsTime(),
    job_type: "create",
    artifact_id: randomUUID(),
    public_key_id: randomUUID(),
    image_root_archive_name: "seeded",
    enable_debug: false,
    build_env_size: 60,
    job_mem_size: 8,
    kernel_file_name: "vmlinuz",
    initrd_file_name: "initrd",
    kernel_parameters_file_name: "kernel-parameters",
    ssh_containers: [],
    require_dkms: true,
    status: "success",
    resultant_image_id: null,
    arch: "x86_64",
    kubernetes_job: null,
    kubernetes_service: null,
    kubernetes_configmap: null,
    kubernetes_pvc: null,
    kubernetes_secret: null,
    kubernetes_namespace: null,
    remote_build_node: "",
    ...rest,
    kiln: {
      error: null,
      worker: "worker-1",
      attempt: 1,
      started: imsTime(),
      ended: imsTime(),
      stages: [],
      cache_hits: 0,
      status_seconds: {},
      status_since: null,
      cancel_requested: false,
      log: `/v3/jobs/${id}/log`,
      ...kiln,
    },
  };
}

/** Writes `lines` log lines for a job, `perChunk` lines a row (as a worker appends them). */
export async function appendLogLines(catalog: Catalog, jobId: string, lines: number, perChunk = 1000): Promise<void> {
  for (let n = 0; n < lines; n += perChunk) {
    let text = "";
    for (let i = n; i < Math.min(lines, n + perChunk); i++) text += `${String(i).padStart(6, "0")} packages: Setting up libexample${i % 97} (1.${i % 13}.0-1) ... done\n`;
    await catalog.appendLog(jobId, text);
  }
}

/**
 * An image as a job publishes it (jobs/publish.ts): its objects under `boot-images/<id>/` with
 * IMS' md5sum and Kiln's sha256 metadata, the uploaded manifest.json listing them, and the record
 * with `kiln.size` (their bytes) and `kiln.verify`. Written straight into the store and the catalog
 * before `kiln serve` opens them. `files`: key under `<id>/` → [media type, body, flavor?].
 */
export async function seedPublishedImage(
  catalog: Catalog,
  store: ObjectStore,
  o: { name: string; files: Record<string, [string, string | Buffer, string?]>; verify: ImageVerify[] | ((id: string) => ImageVerify[]); flavors?: string[]; created?: string },
): Promise<ImageRecord> {
  const id = randomUUID();
  const artifacts: Array<Record<string, unknown>> = [];
  let size = 0;
  for (const [key, [type, body, flavor]] of Object.entries(o.files)) {
    const buf = Buffer.from(body);
    const md5 = createHash("md5").update(buf).digest("hex");
    const sha256 = createHash("sha256").update(buf).digest("hex");
    const info = await store.put(BOOT_IMAGES_BUCKET, `${id}/${key}`, buf, { contentType: type, size: buf.length, metadata: { md5sum: md5, sha256 } });
    size += buf.length;
    artifacts.push({ type, md5, link: { path: s3Path(BOOT_IMAGES_BUCKET, `${id}/${key}`), etag: info.etag, type: "s3" }, ...(flavor ? { flavor } : {}) });
  }
  const manifest = JSON.stringify({ version: "1.0", created: "2026-01-01 00:00:00.000000", artifacts });
  const info = await store.put(BOOT_IMAGES_BUCKET, `${id}/manifest.json`, manifest, { contentType: "application/json", size: Buffer.byteLength(manifest) });
  const record: ImageRecord = {
    id,
    created: o.created ?? imsTime(),
    name: o.name,
    link: { path: s3Path(BOOT_IMAGES_BUCKET, `${id}/manifest.json`), etag: info.etag, type: "s3" },
    arch: "x86_64",
    metadata: {},
    kiln: {
      job_id: null,
      source_image_id: null,
      flavors: (o.flavors ?? ["generic"]).map((f) => ({ flavor: f, kpackage: "linux-image-amd64", kernel_version: "6.1.0-28-amd64" })),
      package_diff: null,
      label: "candidate",
      size,
      verify: typeof o.verify === "function" ? o.verify(id) : o.verify,
    },
  };
  await catalog.insert("images", record);
  return record;
}
