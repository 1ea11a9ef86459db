/**
 * import: the base root from an existing image (squashfs, qcow2, raw disk or filesystem, root
 * tarball), extracted into the layer. The format work lives in import-image.ts.
 *
 * The build's SOURCE_DATE_EPOCH (docs/reproducible.md) is the recipe's `epoch`, else the newest
 * time of a file in the imported tree: a function of the image's bytes (its digest is in this key),
 * the time its maker last wrote it, and never the time of the import.
 */
import { lstat, readdir } from "node:fs/promises";
import path from "node:path";
import { detectImageFormat, extractImage } from "./import-image.js";
import { z } from "zod";
import { IMAGE_FORMATS } from "../recipe/schema.js";
import { defineLayerStage } from "./stage.js";

const ImportOptions = z.strictObject({
  image: z.string(),
  format: z.enum(IMAGE_FORMATS),
  /** The recipe's epoch, or "newest-file": the newest mtime in the imported tree. */
  epoch: z.union([z.int().min(0), z.literal("newest-file")]),
});
export type ImportOptions = z.output<typeof ImportOptions>;

export const importImage = defineLayerStage({
  kind: "import",
  summary: "Import an existing image as the base root",
  options: ImportOptions,
  facts: z.object({ format: z.enum(IMAGE_FORMATS), epoch: z.int().min(0) }),
  plan({ recipe: r, host, digestOf, ref }) {
    if (!("image" in r.base)) return [];
    return [{ options: { image: ref("base.image", r.base.image), format: host.importFormat ?? r.base.format, epoch: r.epoch ?? "newest-file" }, inputs: { "base.image": digestOf(r.base.image) } }];
  },
  // "auto" is resolved before planning: the format is part of the key (and says whether a squashfs is copied).
  hostFacts: async (r) => ("image" in r.base && r.base.format === "auto" ? { importFormat: await detectImageFormat(r.base.image) } : {}),
  base: true,
  tools: ["unsquashfs", "qemu-img", "tar", "sfdisk"],
  async run(ctx, o) {
    const format = o.format === "auto" ? await detectImageFormat(o.image) : o.format;
    ctx.log.line(`importing ${o.image} as ${format}`);
    ctx.facts.format = format;
    await extractImage(o.image, format, ctx.root, { log: ctx.log, signal: ctx.signal, workDir: ctx.workDir });
    const epoch = o.epoch === "newest-file" ? await newestMtime(ctx.root) : o.epoch;
    ctx.facts.epoch = epoch;
    ctx.log.line(`SOURCE_DATE_EPOCH=${epoch} (${new Date(epoch * 1000).toISOString()}, ${o.epoch === "newest-file" ? "the newest file time in the image" : "the recipe's epoch"})`);
  },
});

/**
 * The newest mtime (whole seconds) of a file, symlink or device under `dir` (symlinks not
 * followed); 0 for a tree of empty directories. Directories are left out: an extraction may not
 * restore their times (the root's own is the time of the import).
 */
export async function newestMtime(dir: string): Promise<number> {
  let newest = 0;
  const visit = async (p: string): Promise<void> => {
    const st = await lstat(p);
    if (st.isDirectory()) for (const n of await readdir(p)) await visit(path.join(p, n));
    else newest = Math.max(newest, Math.floor(st.mtimeMs / 1000));
  };
  await visit(dir);
  return newest;
}
