/** How the console writes sizes, times and durations. */
import { formatSize } from "../../src/size.js";

export function bytes(n: number | undefined): string {
  return n === undefined || !Number.isFinite(n) ? "—" : formatSize(n);
}

/** IMS times are UTC without a zone (2024-10-18T17:15:08.436814): shown as UTC, to the second. */
export function when(ims: string | null | undefined): string {
  if (!ims) return "—";
  return `${ims.replace("T", " ").slice(0, 19)} UTC`;
}

export function seconds(s: number | undefined): string {
  if (s === undefined) return "—";
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  return m < 60 ? `${m} min ${Math.round(s % 60)} s` : `${Math.floor(m / 60)} h ${m % 60} min`;
}

/**
 * `s3://bucket/key` → GET /v3/artifacts/bucket/key, the API route that serves any object with the
 * token (src/api/routes/kiln.ts). The same mapping as the CLI's `artifactApiPath`
 * (src/client/ims-client.ts), which the bundle cannot import: that module is typed for Node's fetch.
 */
export function artifactApiPath(s3: string): string {
  return `/v3/artifacts/${s3.replace(/^s3:\/\//, "")}`;
}
