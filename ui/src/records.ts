/**
 * The API's records: the service's own definitions (src/catalog/records.ts has no imports, so the
 * bundle takes its types and enums as they are), plus the two Kiln answers that have no record
 * type there.
 */
import type { ImageRecord } from "../../src/catalog/records.js";
export type { ImageRecord, ImageVerify, JobRecord, PublicKeyRecord, RecipeRecord, PackageDiff, RemoteBuildNodeStatus } from "../../src/catalog/records.js";
export { ARCHES, FINAL_STATUSES, JOB_STATUSES, JOB_TYPES, LINUX_DISTRIBUTIONS, RECIPE_TYPES } from "../../src/catalog/records.js";

/** GET /v3/images/{id}/urls */
export interface PresignedUrls {
  image_id: string;
  expires_at: string;
  manifest: { path: string; url: string };
  artifacts: Array<{ type: string; md5?: string; flavor?: string; path: string; url: string }>;
}

/** GET /v3/service */
export interface ServiceInfo {
  version: string;
  catalog: { kind: "pglite" | "postgres"; location: string };
  store: { kind: "file" | "s3"; location: string };
}

/** GET /v3/workers */
export interface Worker {
  name: string;
  host: string;
  pid: number;
  version: string;
  concurrency: number;
  running: number;
  started: string;
  last_seen: string;
  stopped: string | null;
  alive: boolean;
}

/**
 * An image's verify status, from its record's `kiln.verify`: passed (every boot passed), failed
 * (one did not: a job publishes no such image, an image made by hand may say so), not verified
 * (the job booted nothing), unknown (no record of it: made before Kiln kept it, or POSTed).
 */
export const VERIFY_STATUSES = ["passed", "failed", "not verified", "unknown"] as const;
export type VerifyStatus = (typeof VERIFY_STATUSES)[number];

export function verifyStatus(i: ImageRecord): VerifyStatus {
  const v = i.kiln?.verify;
  if (!v) return "unknown";
  if (v.length === 0) return "not verified";
  return v.every((b) => b.ok) ? "passed" : "failed";
}
