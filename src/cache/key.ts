/**
 * Content keys. A stage's key is the sha256 of its key record's canonical JSON:
 *   { kind, parent, options, inputs, tools }
 * Same record ⇒ same result ⇒ reuse (osbuild's stage ids). The record is stored beside the
 * layer as key.json, so a rebuild can say *why* it missed (see explainMiss).
 */
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";

export interface KeyRecord {
  kind: string;
  parent: string | null;
  options: unknown;
  /** Input files by name → "sha256:<hex>". */
  inputs: Record<string, string>;
  tools: Record<string, string>;
}

/** JSON with object keys sorted at every level, so equal records serialize equally. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortDeep(value));
}

function sortDeep(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortDeep);
  if (v && typeof v === "object") {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v).sort()) {
      const x = (v as Record<string, unknown>)[k];
      if (x !== undefined) out[k] = sortDeep(x);
    }
    return out;
  }
  return v;
}

export function computeKey(record: KeyRecord): string {
  return sha256Hex(canonicalJson(record));
}

export function sha256Hex(data: string | Buffer): string {
  return createHash("sha256").update(data).digest("hex");
}

/** A file's digest in hex, streamed (base images run to gigabytes); every input file is keyed by it. */
export async function fileDigest(file: string, algo: "sha256" | "md5" = "sha256"): Promise<string> {
  const h = createHash(algo);
  for await (const chunk of createReadStream(file)) h.update(chunk as Buffer);
  return h.digest("hex");
}

/** Both digests in one read (artifacts need sha256 and, for IMS, md5). */
export async function fileDigests(file: string): Promise<{ sha256: string; md5: string; size: number }> {
  const s = createHash("sha256");
  const m = createHash("md5");
  let size = 0;
  for await (const chunk of createReadStream(file)) {
    s.update(chunk as Buffer);
    m.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { sha256: s.digest("hex"), md5: m.digest("hex"), size };
}

/**
 * Says in words how two key records differ, e.g. `options.install gained "curl"` or
 * `parent changed`. Used to explain a cache miss when an older layer of the same stage exists.
 */
export function explainMiss(previous: KeyRecord, current: KeyRecord): string[] {
  const out: string[] = [];
  diff("", sortDeep(previous), sortDeep(current), out);
  return out.slice(0, 5);
}

function diff(at: string, a: unknown, b: unknown, out: string[]): void {
  if (canonicalJson(a) === canonicalJson(b)) return;
  if (Array.isArray(a) && Array.isArray(b) && a.every((x) => typeof x !== "object")) {
    const gained = b.filter((x) => !a.includes(x));
    const lost = a.filter((x) => !b.includes(x));
    if (gained.length) out.push(`${at} gained ${gained.map((x) => JSON.stringify(x)).join(", ")}`);
    if (lost.length) out.push(`${at} lost ${lost.map((x) => JSON.stringify(x)).join(", ")}`);
    if (!gained.length && !lost.length) out.push(`${at} changed order`);
    return;
  }
  if (a && b && typeof a === "object" && typeof b === "object" && !Array.isArray(a) && !Array.isArray(b)) {
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    for (const k of keys) diff(at ? `${at}.${k}` : k, (a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], out);
    return;
  }
  out.push(`${at || "record"} changed`);
}
