/**
 * import: the base root from an existing image (squashfs, qcow2, raw disk or filesystem, root
 * tarball), extracted into the layer. The format work lives in import-image.ts.
 */
import { detectImageFormat, extractImage } from "./import-image.js";
import { z } from "zod";
import { IMAGE_FORMATS } from "../recipe/schema.js";
import { defineLayerStage } from "./stage.js";

const ImportOptions = z.strictObject({ image: z.string(), format: z.enum(IMAGE_FORMATS) });
export type ImportOptions = z.output<typeof ImportOptions>;

export const importImage = defineLayerStage({
  kind: "import",
  summary: "Import an existing image as the base root",
  options: ImportOptions,
  facts: z.object({ format: z.enum(IMAGE_FORMATS) }),
  plan({ recipe: r, host, digestOf, ref }) {
    if (!("image" in r.base)) return [];
    return [{ options: { image: ref("base.image", r.base.image), format: host.importFormat ?? r.base.format }, inputs: { "base.image": digestOf(r.base.image) } }];
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
  },
});
