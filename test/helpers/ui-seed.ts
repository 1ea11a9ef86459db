/**
 * Job records as a worker leaves them, written straight into a catalog before `kiln serve` opens
 * it: the API makes jobs only as `creating`, and only a real build fills in stages, a session or a
 * long log. The web console's browser test and bench/ui use these to show those pages without a
 * build. Inserted rows have no worker column, so the service's reaper leaves them alone.
 */
import { randomUUID } from "node:crypto";
import type { Catalog } from "../../src/catalog/catalog.js";
import { imsTime, type JobRecord } from "../../src/catalog/records.js";

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
