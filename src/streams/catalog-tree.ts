/**
 * The service's stream tree, rendered from the catalog: the same documents
 * `kiln streams publish` writes into an out dir (format.ts, names.ts, retention.ts), built from
 * image records instead of out dirs. One products file per published label; a product per image
 * name and kernel flavor; a version per image record; items with the sha256 and size the store
 * holds for each artifact (publishing records `sha256` as object metadata, so nothing is read back).
 *
 * Bootloader products (what MAAS PXE/UEFI-boots anything with) come from a stream folder that
 * `kiln streams bootloaders --to DIR` keeps: they are listed as that folder's products files say,
 * and their files are served from it.
 *
 * Only images whose upload finished (a `link`) and whose job succeeded (a `kiln.label`, set only
 * then) are listed, and only under a label the service publishes: an image in no published label
 * has no path in the tree, so it cannot be fetched through it.
 */
import path from "node:path";
import { uploadedKindOf } from "../artifacts/types.js";
import type { ImageRecord } from "../catalog/records.js";
import { buildIndex, streamTimestamp, type IndexFile, type ProductsFile, type StreamItem, type StreamProduct } from "./format.js";
import { imageContentId, imageProductName, type StreamNaming } from "./names.js";
import { pruneVersions } from "./retention.js";
import { emptyProducts } from "./stream-dir.js";

/** One artifact of an image as the store holds it. */
export interface TreeArtifact {
  /** IMS manifest type, e.g. application/vnd.cray.image.kernel. */
  type: string;
  flavor?: string;
  bucket: string;
  key: string;
  sha256: string;
  size: number;
}

export interface TreeImage {
  image: ImageRecord;
  artifacts: TreeArtifact[];
}

/** What an item path of the tree is served from: a store object, or a file of the bootloader folder. */
export type TreeObject = { bucket: string; key: string } | { file: string };

export interface CatalogTree {
  index: IndexFile;
  /** content id → products file. */
  products: Map<string, ProductsFile>;
  /** Item path in the tree → what is behind it (only paths of listed versions). */
  objects: Map<string, TreeObject>;
}

/** Bootloader products files read from a stream folder, and that folder (their item paths are relative to it). */
export interface TreeBootloaders {
  root: string;
  files: ProductsFile[];
}

/** IMS arch names → the Debian/MAAS ones simplestreams uses. */
const STREAM_ARCH: Record<string, string> = { x86_64: "amd64", aarch64: "arm64" };

/** Image names become a path segment and a product-name field: keep what both allow. */
function releaseOf(name: string): string {
  return name.toLowerCase().replace(/[^a-z0-9.-]+/g, "-").replace(/^-+|-+$/g, "") || "image";
}

/** Whether an image belongs in the tree under one of `labels`. */
export function listable(image: ImageRecord, labels: readonly string[]): boolean {
  return !image.deleted && image.link !== null && typeof image.kiln?.label === "string" && labels.includes(image.kiln.label);
}

export interface TreeOptions {
  labels: readonly string[];
  naming: StreamNaming;
  /** Versions kept per product (all when undefined). */
  keep?: number;
  now: Date;
  subarch?: string;
  /**
   * Before every item path: item paths are relative to the mirror root (the folder holding
   * `streams/v1`), and the service's root is its own `/`, so its items live under `streams/`.
   */
  pathPrefix?: string;
  bootloaders?: TreeBootloaders;
}

export function renderCatalogTree(images: TreeImage[], o: TreeOptions): CatalogTree {
  const subarch = o.subarch ?? "generic";
  const products = new Map<string, ProductsFile>();
  const objects = new Map<string, TreeObject>();
  const pending = new Map<string, Map<string, { bucket: string; key: string }>>();
  // Oldest first, so version names count up within a day in creation order.
  const sorted = images.filter((t) => listable(t.image, o.labels)).sort((a, b) => a.image.created.localeCompare(b.image.created) || a.image.id.localeCompare(b.image.id));
  const taken = new Set<string>();
  for (const { image, artifacts } of sorted) {
    const label = image.kiln!.label!;
    const contentId = imageContentId(o.naming, label);
    const file = products.get(contentId) ?? emptyProducts(contentId, o.now);
    products.set(contentId, file);
    const release = releaseOf(image.name);
    const arch = STREAM_ARCH[image.arch] ?? image.arch;
    const day = image.created.slice(0, 10).replaceAll("-", "");
    // Unique across labels too: every label's items share one path space.
    let version = day;
    for (let n = 1; taken.has(`${release}/${arch}/${version}`); n++) version = `${day}.${n}`;
    taken.add(`${release}/${arch}/${version}`);
    const base = `${o.pathPrefix ?? ""}${release}/${arch}/${version}`;
    const firstFlavor = artifacts.find((a) => a.flavor)?.flavor ?? image.kiln?.flavors[0]?.flavor ?? "generic";
    const shared: Record<string, StreamItem> = {};
    const flavors = new Map<string, Record<string, StreamItem>>();
    const where = new Map<string, { bucket: string; key: string }>();
    for (const a of artifacts) {
      // Named and placed as `kiln streams publish` places an out dir's files.
      const t = uploadedKindOf(a.type);
      if (!t) continue;
      const flavor = a.flavor ?? firstFlavor;
      const rel = t.perFlavor ? `${base}/${subarch}/${flavor}/${t.name}` : `${base}/${t.name}`;
      const kpackage = image.kiln?.flavors.find((f) => f.flavor === flavor)?.kpackage;
      const item: StreamItem = { ftype: t.ftype, path: rel, sha256: a.sha256, size: a.size, ...(t.perFlavor && kpackage && t.ftype !== "boot-params" ? { kpackage } : {}) };
      where.set(rel, { bucket: a.bucket, key: a.key });
      if (t.perFlavor) flavors.set(flavor, { ...(flavors.get(flavor) ?? {}), [t.ftype]: item });
      else shared[t.ftype] = item;
    }
    for (const [flavor, items] of flavors) {
      // MAAS needs a squashfs, its package manifest, a kernel and an initrd per version; anything
      // less (e.g. an image uploaded before jobs stored the manifest) is not listed.
      if (!shared.squashfs || !shared.manifest || !items["boot-kernel"] || !items["boot-initrd"]) continue;
      const name = imageProductName(o.naming, label, release, arch, subarch, flavor);
      const existing = file.products[name];
      file.products[name] = {
        arch, kflavor: flavor, krel: release, label, os: "debian", release, release_codename: release, release_title: image.name,
        subarch, subarches: subarch, version: release,
        versions: { ...(existing?.versions ?? {}), [version]: { items: { ...shared, ...items }, kiln_image_id: image.id } },
      };
    }
    pending.set(`${contentId} ${base}`, where);
  }
  for (const f of products.values()) if (o.keep !== undefined) pruneVersions(f, o.keep);
  // Only the paths the (pruned) products files still name can be fetched.
  const named = new Set<string>();
  for (const f of products.values()) for (const p of Object.values(f.products)) for (const v of Object.values(p.versions)) for (const i of Object.values(v.items)) named.add(i.path);
  for (const where of pending.values()) for (const [rel, obj] of where) if (named.has(rel)) objects.set(rel, obj);
  for (const [id, f] of products) if (Object.keys(f.products).length === 0) products.delete(id);
  if (o.bootloaders) addBootloaders(products, objects, o.bootloaders, o.pathPrefix ?? "");
  return { index: buildIndex([...products.values()], streamTimestamp(o.now)), products, objects };
}

/** Adds the folder's bootloader products with item paths moved under the tree's prefix; an item outside the folder is skipped with its version. */
function addBootloaders(products: Map<string, ProductsFile>, objects: Map<string, TreeObject>, b: TreeBootloaders, prefix: string): void {
  const root = path.resolve(b.root);
  for (const file of b.files) {
    const copy: ProductsFile = { ...file, products: {} };
    for (const [name, product] of Object.entries(file.products)) {
      const versions: StreamProduct["versions"] = {};
      for (const [v, version] of Object.entries(product.versions)) {
        const items: Record<string, StreamItem> = {};
        const files = new Map<string, string>();
        for (const [k, item] of Object.entries(version.items)) {
          const abs = path.resolve(root, item.path);
          if (!abs.startsWith(`${root}${path.sep}`)) break;
          items[k] = { ...item, path: `${prefix}${item.path}` };
          files.set(`${prefix}${item.path}`, abs);
        }
        if (files.size !== Object.keys(version.items).length) continue;
        versions[v] = { ...version, items };
        for (const [rel, abs] of files) objects.set(rel, { file: abs });
      }
      if (Object.keys(versions).length > 0) copy.products[name] = { ...product, versions };
    }
    if (Object.keys(copy.products).length > 0) products.set(copy.content_id, copy);
  }
}
