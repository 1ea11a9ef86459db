/**
 * Content keys. A stage's key is the sha256 of its key record's canonical JSON:
 *   { kind, parent, options, inputs, tools }
 * Same record ⇒ same result ⇒ reuse (osbuild's stage ids). The record is stored beside the
 * layer as key.json, so a rebuild can say *why* it missed (see explainMiss).
 *
 * The key names the parent by *its* key, which says what the parent was asked to be, not what
 * it holds: a bootstrap rebuilt under the same key (after a prune, or by --from) holds newer
 * packages. A layer is an overlay upper dir, only valid on the very lower dirs it was made on,
 * so key.json also records the Binding: the generation (a random id given at each commit) of
 * the parent and of every other entry the stage read. An entry is reused only when those
 * entries, as they are in the cache now, still have those generations. The binding is not
 * part of the key: `kiln plan` computes keys without reading the cache.
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

/** What an entry was built on: the generations of its parent and of the other entries it read. */
export interface Binding {
  /** The parent entry's generation when this one was built on it; null for a stage without parent. */
  parentGeneration: string | null;
  /** Other entries' files the stage read (the ISO reads the squashfs and a flavor's kernel), by use name. */
  inputGenerations?: Record<string, string>;
}

/** key.json: the key record and the binding. */
export type StoredKeyRecord = KeyRecord & Binding;

/** Whether an entry built with `stored` may be reused where `wanted` is what the cache holds now. */
export function sameBinding(stored: Partial<Binding>, wanted: Binding): boolean {
  return (stored.parentGeneration ?? null) === wanted.parentGeneration && canonicalJson(stored.inputGenerations ?? {}) === canonicalJson(wanted.inputGenerations ?? {});
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
  return sha256Hex(canonicalJson(declared(record)));
}

/** The record without its binding: the part the key is computed from. */
function declared(r: KeyRecord): KeyRecord {
  return { kind: r.kind, parent: r.parent, options: r.options, inputs: r.inputs, tools: r.tools };
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
 * With equal records and bindings given, a different binding reads `parent rebuilt` (or
 * `input kernel rebuilt`): the entry was made on a layer that has since been built again.
 */
export function explainMiss(previous: KeyRecord & Partial<Binding>, current: KeyRecord & Partial<Binding>): string[] {
  const out: string[] = [];
  diff("", sortDeep(declared(previous)), sortDeep(declared(current)), out);
  if (out.length === 0 && current.parentGeneration !== undefined) {
    if ((previous.parentGeneration ?? null) !== current.parentGeneration) out.push("parent rebuilt");
    const before = previous.inputGenerations ?? {};
    for (const [name, generation] of Object.entries(current.inputGenerations ?? {})) {
      if (before[name] !== generation) out.push(`input ${name} rebuilt`);
    }
  }
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
