import assert from "node:assert/strict";
import { test } from "node:test";
import type { ImageRecord } from "../../src/catalog/records.js";
import { renderCatalogTree, type TreeImage } from "../../src/streams/catalog-tree.js";

const NOW = new Date("2026-12-03T12:00:00Z");
const naming = { prefix: "org.kiln" };

function image(id: string, created: string, label: string | undefined, opts: { link?: boolean; deleted?: boolean } = {}): TreeImage {
  const rec: ImageRecord = {
    id, created, name: "Web Node", arch: "x86_64", metadata: {},
    link: opts.link === false ? null : { path: `s3://boot-images/${id}/manifest.json`, etag: "e", type: "s3" },
    ...(opts.deleted ? { deleted: created } : {}),
    kiln: { job_id: "j", source_image_id: null, flavors: [{ flavor: "generic", kpackage: "linux-image-amd64", kernel_version: "6.1.0" }], package_diff: null, ...(label ? { label } : {}) },
  };
  const art = (type: string, base: string, size: number) => ({ type, flavor: "generic", bucket: "boot-images", key: `${id}/${base}`, sha256: `${base}-${id}`.padEnd(64, "0").slice(0, 64), size });
  return {
    image: rec,
    artifacts: [
      { ...art("application/vnd.cray.image.rootfs.squashfs", "rootfs", 100), flavor: undefined },
      art("application/vnd.cray.image.kernel", "kernel", 10),
      art("application/vnd.cray.image.initrd", "initrd", 20),
      { ...art("text/tab-separated-values", "rootfs.manifest", 5), flavor: undefined },
    ],
  };
}

test("catalog tree: only linked images under a published label are listed, with sha256 and size from the store", () => {
  const t = renderCatalogTree([
    image("a", "2026-12-01T10:00:00.000000", "stable"),
    image("b", "2026-12-01T11:00:00.000000", "candidate"),
    image("c", "2026-12-02T10:00:00.000000", "stable", { link: false }),
    image("d", "2026-12-02T11:00:00.000000", undefined),
    image("e", "2026-12-02T12:00:00.000000", "stable", { deleted: true }),
  ], { labels: ["stable"], naming, now: NOW });
  assert.deepEqual([...t.products.keys()], ["org.kiln:stable:v3:download"]);
  const f = t.products.get("org.kiln:stable:v3:download")!;
  assert.deepEqual(Object.keys(f.products), ["org.kiln.stable:v3:boot:web-node:amd64:generic"]);
  const p = f.products["org.kiln.stable:v3:boot:web-node:amd64:generic"]!;
  assert.deepEqual(Object.keys(p.versions), ["20261201"]);
  const items = p.versions["20261201"]!.items;
  assert.equal(items.squashfs!.size, 100);
  assert.equal(items["boot-kernel"]!.path, "web-node/amd64/20261201/generic/generic/boot-kernel");
  assert.equal(items["boot-kernel"]!.kpackage, "linux-image-amd64");
  assert.deepEqual(t.objects.get(items.squashfs!.path), { bucket: "boot-images", key: "a/rootfs" });
  // b is a candidate: no path of it can be fetched through a stable-only tree.
  assert.ok(![...t.objects.values()].some((o) => "key" in o && o.key.startsWith("b/")));
  assert.equal(items.manifest!.path, "web-node/amd64/20261201/squashfs.manifest");
  assert.deepEqual(Object.keys(t.index.index), ["org.kiln:stable:v3:download"]);
});

test("catalog tree: retention keeps the newest N versions per product, and the pruned items are not reachable", () => {
  const t = renderCatalogTree([
    image("a", "2026-12-01T10:00:00.000000", "stable"),
    image("b", "2026-12-01T11:00:00.000000", "stable"),
    image("c", "2026-12-02T10:00:00.000000", "stable"),
  ], { labels: ["stable", "candidate"], naming, keep: 2, now: NOW });
  const p = t.products.get("org.kiln:stable:v3:download")!.products["org.kiln.stable:v3:boot:web-node:amd64:generic"]!;
  assert.deepEqual(Object.keys(p.versions).sort(), ["20261201.1", "20261202"]);
  assert.ok(![...t.objects.values()].some((o) => "key" in o && o.key.startsWith("a/")), "the pruned version's objects are not in the tree");
  assert.ok([...t.objects.values()].some((o) => "key" in o && o.key === "c/kernel"));
});
