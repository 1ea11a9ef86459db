/**
 * `kiln streams check DIR|URL`: validates a stream against every rule a client enforces
 * (listed in docs/streams.md#checking-a-stream): what the simplestreams client skips, what MAAS master's models reject
 * (a products file is rejected whole for one bad product), what every downloader checks (sha256
 * and size of each file), and signatures with a given keyring (gpgv, as MAAS does). It reports
 * every violation, not the first.
 */
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { KilnError } from "../errors.js";
import { STREAMS_DIR, TIMESTAMP_RE, VERSION_RE, type IndexFile, type ProductsFile, type StreamItem, type StreamProduct } from "./format.js";
import { productSubarch } from "./names.js";
import { clearsignedJson, openVerifier, type Verifier } from "./sign.js";

export interface Violation {
  /** The file (relative to the stream root) and the place in it. */
  where: string;
  message: string;
}

export interface CheckReport {
  violations: Violation[];
  products: number;
  versions: number;
  files: number;
  bytes: number;
  signaturesChecked: number;
}

/** Where a stream is read from: a folder or a URL. */
export interface StreamSource {
  readonly name: string;
  /** The file's text, or undefined when it does not exist. */
  readText(rel: string): Promise<string | undefined>;
  /** sha256 and size, streaming; undefined when it does not exist. */
  digest(rel: string): Promise<{ sha256: string; size: number } | undefined>;
}

export function openSource(where: string): StreamSource {
  if (/^https?:\/\//.test(where)) {
    // A URL to the index itself (as a MAAS boot source may be given) names its stream root too.
    const base = where.replace(/streams\/v1\/[^/]*\.s?json$/, "").replace(/\/?$/, "/");
    return urlSource(base);
  }
  return dirSource(path.resolve(where.replace(/streams\/v1\/[^/]*\.s?json$/, "") || "."));
}

function dirSource(root: string): StreamSource {
  return {
    name: root,
    readText: (rel) => readFile(path.join(root, rel), "utf8").catch(() => undefined),
    digest: async (rel) => {
      try {
        const h = createHash("sha256");
        let size = 0;
        for await (const chunk of createReadStream(path.join(root, rel))) {
          h.update(chunk as Buffer);
          size += (chunk as Buffer).length;
        }
        return { sha256: h.digest("hex"), size };
      } catch {
        return undefined;
      }
    },
  };
}

function urlSource(base: string): StreamSource {
  const get = async (rel: string) => {
    const res = await fetch(new URL(rel, base));
    if (res.status === 404) return undefined;
    if (!res.ok) throw new KilnError("INPUT_INVALID", `${new URL(rel, base).href}: HTTP ${res.status}`);
    return res;
  };
  return {
    name: base,
    readText: async (rel) => (await get(rel))?.text(),
    digest: async (rel) => {
      const res = await get(rel);
      if (!res?.body) return undefined;
      const h = createHash("sha256");
      let size = 0;
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        h.update(chunk);
        size += chunk.length;
      }
      return { sha256: h.digest("hex"), size };
    },
  };
}

export interface CheckOptions {
  /** Verify every signature with gpgv against this keyring, and read the signed (.sjson) tree as MAAS does. */
  keyring?: string;
  /** Download and hash every item file (default true). */
  files?: boolean;
}

/** MAAS' bootloader triples (image_sync.py SUPPORTED_BOOTLOADERS) and item names (models.py). */
const BOOTLOADERS = [
  ["pxelinux", "pxe", "i386"],
  ["grub-efi-signed", "uefi", "amd64"],
  ["grub-efi", "uefi", "arm64"],
  ["grub-ieee1275", "open-firmware", "ppc64el"],
];
const BOOTLOADER_ITEMS = ["grub2-signed", "shim-signed", "grub2", "syslinux"];
const IMAGE_FIELDS = ["arch", "label", "os", "release", "release_title", "subarch", "subarches", "version", "kflavor", "krel"];
const DATE_RE = /^\d{4}-\d{2}-\d{2}$/;

export async function checkStream(src: StreamSource, o: CheckOptions = {}): Promise<CheckReport> {
  const report: CheckReport = { violations: [], products: 0, versions: 0, files: 0, bytes: 0, signaturesChecked: 0 };
  const bad = (where: string, message: string) => report.violations.push({ where, message });
  const verifier = o.keyring ? await openVerifier(o.keyring) : undefined;
  try {
    const indexRel = `${STREAMS_DIR}/index.json`;
    const index = await readDocument<IndexFile>(src, indexRel, verifier, report, bad);
    if (!index) return report;
    checkIndex(index, verifier ? `${STREAMS_DIR}/index.sjson` : indexRel, bad);
    const files = new Map<string, { item: StreamItem; where: string }>();
    for (const [contentId, entry] of Object.entries(index.index ?? {})) {
      if (typeof entry?.path !== "string") continue;
      const jsonRel = entry.path.replace(/\.sjson$/, ".json");
      if (verifier && !entry.path.endsWith(".sjson")) bad(`${STREAMS_DIR}/index.sjson`, `index["${contentId}"].path: ${entry.path} is not a .sjson file; a signed index must point at signed products files`);
      const products = await readDocument<ProductsFile>(src, jsonRel, verifier, report, bad);
      if (!products) continue;
      checkProducts(products, contentId, entry.products, verifier ? jsonRel.replace(/\.json$/, ".sjson") : jsonRel, report, files, bad);
    }
    if (o.files !== false) {
      for (const [rel, { item, where }] of [...files].sort((a, b) => a[0].localeCompare(b[0]))) {
        const d = await src.digest(rel);
        report.files++;
        if (!d) {
          bad(where, `${rel}: missing (a client would get 404)`);
          continue;
        }
        report.bytes += d.size;
        if (d.size !== item.size) bad(where, `${rel}: size is ${d.size}, the stream says ${item.size}`);
        if (d.sha256 !== item.sha256) bad(where, `${rel}: sha256 is ${d.sha256}, the stream says ${item.sha256}`);
      }
    }
    return report;
  } finally {
    await verifier?.close();
  }
}

/**
 * Reads `X.json`, or with a keyring `X.sjson` (as MAAS does: signature verified with gpgv, JSON cut
 * from it MAAS' way) plus the detached `X.json.gpg` over `X.json` when it is there. The two forms
 * must say the same thing (index paths aside).
 */
async function readDocument<T>(src: StreamSource, jsonRel: string, verifier: Verifier | undefined, report: CheckReport, bad: (w: string, m: string) => void): Promise<T | undefined> {
  const sjsonRel = jsonRel.replace(/\.json$/, ".sjson");
  const jsonText = await src.readText(jsonRel);
  const sjsonText = await src.readText(sjsonRel);
  let json: T | undefined;
  if (jsonText !== undefined) {
    try {
      json = JSON.parse(jsonText) as T;
    } catch (e) {
      bad(jsonRel, `not JSON: ${(e as Error).message}`);
    }
  }
  if (verifier) {
    if (sjsonText === undefined) {
      bad(sjsonRel, "missing: with a keyring MAAS reads the signed stream, and every file must be signed");
      return undefined;
    }
    const v = await verifier.verifyClearsigned(sjsonText);
    report.signaturesChecked++;
    if (!v.ok) bad(sjsonRel, `signature does not verify with the keyring (${v.why})`);
    const gpgText = await src.readText(`${jsonRel}.gpg`);
    if (gpgText !== undefined && jsonText !== undefined) {
      const d = await verifier.verifyDetached(gpgText, jsonText);
      report.signaturesChecked++;
      if (!d.ok) bad(`${jsonRel}.gpg`, `detached signature does not verify over ${path.posix.basename(jsonRel)} (${d.why})`);
    }
  }
  let signed: T | undefined;
  if (sjsonText !== undefined) {
    try {
      signed = JSON.parse(clearsignedJson(sjsonText)) as T;
    } catch {
      bad(sjsonRel, "MAAS cannot read the JSON in it (it cuts from the first '{' to the signature, without undoing dash-escaping)");
    }
  }
  if (json !== undefined && signed !== undefined && JSON.stringify(normalizePaths(json)) !== JSON.stringify(normalizePaths(signed))) {
    bad(sjsonRel, `says something else than ${path.posix.basename(jsonRel)}: one of them is stale`);
  }
  if (jsonText === undefined && !verifier) {
    if (signed !== undefined) return signed;
    bad(jsonRel, "missing");
  }
  return verifier ? (signed ?? json) : json;
}

/** For comparing index.json with index.sjson: the signed index's paths end in .sjson. */
function normalizePaths(v: unknown): unknown {
  return JSON.parse(JSON.stringify(v), (k, x: unknown) => (k === "path" && typeof x === "string" ? x.replace(/\.sjson$/, ".json") : x));
}

function checkIndex(index: IndexFile, where: string, bad: (w: string, m: string) => void): void {
  if (index.format !== "index:1.0") bad(where, `format: ${JSON.stringify(index.format)}; must be "index:1.0"`);
  checkTimestamp(index.updated, `${where}: updated`, bad);
  if (!index.index || typeof index.index !== "object") return bad(where, "index: missing");
  for (const [id, e] of Object.entries(index.index)) {
    const at = `${where}: index["${id}"]`;
    if (e.format === undefined) bad(at, "format: missing; the simplestreams client silently skips such an entry");
    else if (e.format !== "products:1.0") bad(at, `format: ${JSON.stringify(e.format)}; must be "products:1.0"`);
    if (e.datatype !== "image-ids" && e.datatype !== "image-downloads") bad(at, `datatype: ${JSON.stringify(e.datatype)}; MAAS accepts "image-ids" or "image-downloads"`);
    if (typeof e.path !== "string") bad(at, "path: missing");
    if (!Array.isArray(e.products)) bad(at, "products: missing; MAAS needs the list of product names");
    checkTimestamp(e.updated, `${at}.updated`, bad);
  }
}

function checkTimestamp(v: unknown, at: string, bad: (w: string, m: string) => void): void {
  if (v === undefined) bad(at, "missing");
  else if (typeof v !== "string" || !TIMESTAMP_RE.test(v)) bad(at, `${JSON.stringify(v)} is not of the form "Thu, 24 Jul 2025 08:01:49 +0000"`);
}

function checkProducts(
  f: ProductsFile,
  contentId: string,
  listed: unknown,
  where: string,
  report: CheckReport,
  files: Map<string, { item: StreamItem; where: string }>,
  bad: (w: string, m: string) => void,
): void {
  if (f.content_id !== contentId) bad(where, `content_id: ${JSON.stringify(f.content_id)}, but the index lists it as ${JSON.stringify(contentId)}`);
  if (f.format !== "products:1.0") bad(where, `format: ${JSON.stringify(f.format)}; must be "products:1.0"`);
  if (f.datatype !== "image-ids" && f.datatype !== "image-downloads") bad(where, `datatype: ${JSON.stringify(f.datatype)}; MAAS accepts "image-ids" or "image-downloads"`);
  checkTimestamp(f.updated, `${where}: updated`, bad);
  if (!f.products || typeof f.products !== "object") return bad(where, "products: missing");
  const names = Object.keys(f.products).sort();
  if (Array.isArray(listed) && JSON.stringify([...listed].sort()) !== JSON.stringify(names)) {
    bad(where, `the index lists products ${JSON.stringify([...listed].sort())}, the file has ${JSON.stringify(names)}`);
  }
  for (const name of names) {
    const p = f.products[name]!;
    const at = `${where}: products["${name}"]`;
    report.products++;
    if (/:1:/.test(name)) checkBootloader(name, p, at, bad);
    else if (/:v([23]|3\+platform):/.test(name)) checkImage(name, p, at, bad);
    else bad(at, "the name matches neither MAAS filter (`:v3:` for images, `:1:` for bootloaders)");
    if (!p.versions || typeof p.versions !== "object" || Object.keys(p.versions).length === 0) {
      bad(at, "versions: none");
      continue;
    }
    for (const [v, ver] of Object.entries(p.versions)) {
      const vat = `${at}.versions["${v}"]`;
      report.versions++;
      if (!VERSION_RE.test(v)) bad(vat, "the version name is not YYYYMMDD or YYYYMMDD.N");
      for (const [iname, item] of Object.entries(ver.items ?? {})) {
        const iat = `${vat}.items["${iname}"]`;
        if (checkItem(item, iat, bad)) {
          const seen = files.get(item.path);
          if (seen && (seen.item.sha256 !== item.sha256 || seen.item.size !== item.size)) bad(iat, `${item.path} is also listed at ${seen.where} with another sha256 or size`);
          else if (!seen) files.set(item.path, { item, where: iat });
        }
      }
      if (/:v([23]|3\+platform):/.test(name) && !/:1:/.test(name)) checkImageItems(ver.items ?? {}, vat, bad);
      if (/:1:/.test(name)) checkBootloaderItems(ver.items ?? {}, vat, bad);
    }
  }
}

function checkImage(name: string, p: StreamProduct, at: string, bad: (w: string, m: string) => void): void {
  for (const k of IMAGE_FIELDS) {
    if (p[k] === undefined) bad(at, `${k}: missing; MAAS needs it`);
    else if (typeof p[k] !== "string" || p[k] === "") bad(at, `${k}: ${JSON.stringify(p[k])} must be a non-empty string${k === "version" ? " (a float version breaks maas-images and MAAS alike)" : ""}`);
  }
  for (const k of ["support_eol", "support_esm_eol"]) if (p[k] !== undefined && (typeof p[k] !== "string" || !DATE_RE.test(p[k]))) bad(at, `${k}: ${JSON.stringify(p[k])} is not YYYY-MM-DD`);
  if (typeof p.label === "string" && !name.includes(`.${p.label}:`)) bad(at, `the name does not carry the product's label ${JSON.stringify(p.label)} (".${p.label}:")`);
  if (typeof p.subarch === "string" && typeof p.arch === "string") {
    const tail = `:${p.arch}:${productSubarch(p.subarch, typeof p.kflavor === "string" ? p.kflavor : "generic")}`;
    if (!name.endsWith(`:${String(p.release)}${tail}`) && !name.endsWith(`:${String(p.version)}${tail}`)) {
      bad(at, `the name should end in ":<release or version>${tail}" (release, arch, subarch and kflavor of the product)`);
    }
  }
  if (typeof p.subarches === "string" && typeof p.subarch === "string" && !p.subarches.split(",").map((s) => s.trim()).includes(p.subarch)) {
    bad(at, `subarches ${JSON.stringify(p.subarches)} does not include the product's own subarch ${JSON.stringify(p.subarch)}`);
  }
}

function checkBootloader(name: string, p: StreamProduct, at: string, bad: (w: string, m: string) => void): void {
  for (const k of ["arch", "arches", "bootloader-type", "label", "os"]) {
    if (typeof p[k] !== "string" || p[k] === "") bad(at, `${k}: ${p[k] === undefined ? "missing" : JSON.stringify(p[k])}; MAAS needs a non-empty string`);
  }
  const triple = [p.os, p["bootloader-type"], p.arch];
  if (!BOOTLOADERS.some((t) => t.every((x, i) => x === triple[i]))) {
    bad(at, `(os, bootloader-type, arch) = ${JSON.stringify(triple)} is not one MAAS takes: ${BOOTLOADERS.map((t) => t.join("/")).join(", ")}`);
  }
  if (typeof p.label === "string" && !name.includes(`.${p.label}:`)) bad(at, `the name does not carry the product's label ${JSON.stringify(p.label)}`);
}

function checkItem(item: StreamItem, at: string, bad: (w: string, m: string) => void): boolean {
  let ok = true;
  if (typeof item.ftype !== "string") bad(at, "ftype: missing");
  if (typeof item.path !== "string" || item.path.startsWith("/") || item.path.split("/").includes("..") || item.path === "") {
    bad(at, `path: ${JSON.stringify(item.path)} must be a relative path inside the stream`);
    ok = false;
  }
  if (typeof item.sha256 !== "string" || !/^[0-9a-f]{64}$/.test(item.sha256)) {
    bad(at, `sha256: ${item.sha256 === undefined ? "missing; MAAS needs it" : `${JSON.stringify(item.sha256)} is not 64 hex digits`}`);
    ok = false;
  }
  if (!Number.isInteger(item.size) || item.size < 0) {
    bad(at, `size: ${JSON.stringify(item.size)} must be an integer (MAAS checks it)`);
    ok = false;
  }
  return ok;
}

function checkImageItems(items: Record<string, StreamItem>, at: string, bad: (w: string, m: string) => void): void {
  for (const name of ["boot-kernel", "boot-initrd", "manifest"]) {
    if (!items[name]) bad(at, `items: no "${name}"; MAAS rejects the whole products file`);
  }
  if (!items.squashfs && !items["root-image.gz"]) bad(at, `items: no "squashfs" (or "root-image.gz"); MAAS rejects the whole products file`);
  for (const name of ["boot-kernel", "boot-initrd", "manifest", "squashfs", "root-image.gz"]) {
    const i = items[name];
    if (i && i.ftype !== name) bad(`${at}.items["${name}"]`, `ftype: ${JSON.stringify(i.ftype)}; must be "${name}"`);
  }
  for (const name of ["boot-kernel", "boot-initrd"]) {
    const i = items[name];
    if (i && (typeof i.kpackage !== "string" || i.kpackage === "")) bad(`${at}.items["${name}"]`, "kpackage: missing");
  }
}

function checkBootloaderItems(items: Record<string, StreamItem>, at: string, bad: (w: string, m: string) => void): void {
  if (Object.keys(items).length === 0) bad(at, "items: none");
  for (const [name, i] of Object.entries(items)) {
    const iat = `${at}.items["${name}"]`;
    if (!BOOTLOADER_ITEMS.includes(name)) bad(iat, `MAAS takes only bootloader items named ${BOOTLOADER_ITEMS.join(", ")}`);
    if (i.ftype !== "archive.tar.xz") bad(iat, `ftype: ${JSON.stringify(i.ftype)}; must be "archive.tar.xz"`);
    for (const k of ["src_package", "src_release", "src_version"]) if (typeof i[k] !== "string" || i[k] === "") bad(iat, `${k}: missing`);
  }
}

export function describeViolations(r: CheckReport): string[] {
  return r.violations.map((v) => `${v.where}: ${v.message}`);
}
