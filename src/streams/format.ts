/**
 * The simplestreams v3 documents as maas-images writes them (docs/streams.md#the-tree): `index:1.0` and
 * `products:1.0` JSON, dumped with indent 1, sorted keys and a trailing newline, timestamps in
 * RFC 2822 form (`Thu, 24 Jul 2025 08:01:49 +0000`, simplestreams `util.timestamp()`).
 */
import { canonicalJson } from "../cache/key.js";

/** One downloadable file of a product version. `size` is an integer; there is no md5 (MAAS needs sha256). */
export interface StreamItem {
  ftype: string;
  path: string;
  sha256: string;
  size: number;
  /** On boot-kernel and boot-initrd: the kernel package. */
  kpackage?: string;
  /** Bootloader archives: the Debian source package the files came from. */
  src_package?: string;
  src_release?: string;
  src_version?: string;
  [field: string]: unknown;
}

export interface StreamVersion {
  items: Record<string, StreamItem>;
  [field: string]: unknown;
}

/** A product: its fields (arch, label, os, release, …) and its versions by name (YYYYMMDD[.N]). */
export interface StreamProduct {
  versions: Record<string, StreamVersion>;
  [field: string]: unknown;
}

export interface ProductsFile {
  content_id: string;
  datatype: "image-ids" | "image-downloads";
  format: "products:1.0";
  updated: string;
  products: Record<string, StreamProduct>;
}

export interface IndexEntry {
  datatype: string;
  format: string;
  path: string;
  products: string[];
  updated: string;
}

export interface IndexFile {
  format: "index:1.0";
  index: Record<string, IndexEntry>;
  updated: string;
}

export const STREAMS_DIR = "streams/v1";

/** `streams/v1/<content_id>.json`. */
export function productsPath(contentId: string): string {
  return `${STREAMS_DIR}/${contentId}.json`;
}

/** JSON the way maas-images' dump_data() writes it: indent 1, keys sorted, newline at the end. */
export function dumpJson(value: unknown): string {
  return JSON.stringify(JSON.parse(canonicalJson(value)), null, 1) + "\n";
}

const DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/** `"%a, %d %b %Y %H:%M:%S +0000"` in UTC, as simplestreams writes `updated`. */
export function streamTimestamp(d: Date): string {
  const p = (n: number) => String(n).padStart(2, "0");
  return `${DAYS[d.getUTCDay()]}, ${p(d.getUTCDate())} ${MONTHS[d.getUTCMonth()]} ${d.getUTCFullYear()} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} +0000`;
}

export const TIMESTAMP_RE = /^(Sun|Mon|Tue|Wed|Thu|Fri|Sat), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} \+0000$/;

/** Version names: the build serial `YYYYMMDD` or `YYYYMMDD.N`. Clients order them by plain string sort. */
export const VERSION_RE = /^\d{8}(\.\d+)?$/;

/** Newest first, by the plain string sort simplestreams and MAAS use (so ".10" sorts before ".9", as there). */
export function versionsNewestFirst(p: StreamProduct): string[] {
  return Object.keys(p.versions).sort().reverse();
}

/** Builds index.json from the products files, as maas-images' create_index() does. */
export function buildIndex(files: ProductsFile[], updated: string): IndexFile {
  const index: Record<string, IndexEntry> = {};
  for (const f of files) {
    index[f.content_id] = {
      datatype: f.datatype,
      format: f.format,
      path: productsPath(f.content_id),
      products: Object.keys(f.products).sort(),
      updated: f.updated,
    };
  }
  return { format: "index:1.0", index, updated };
}
