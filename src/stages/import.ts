/**
 * import: the base root from an existing image (squashfs, qcow2, raw disk or filesystem, root
 * tarball), extracted into the layer. The format work lives in import-image.ts.
 */
import { detectImageFormat, extractImage } from "./import-image.js";
import { defineLayerStage } from "./stage.js";

export interface ImportOptions {
  image: string;
  format: "auto" | "squashfs" | "qcow2" | "raw" | "tar";
}

export const importImage = defineLayerStage<ImportOptions>({
  kind: "import",
  summary: "Import an existing image as the base root",
  base: true,
  tools: ["unsquashfs", "qemu-img", "tar", "sfdisk"],
  async run(ctx, o) {
    const format = o.format === "auto" ? await detectImageFormat(o.image) : o.format;
    ctx.log.line(`importing ${o.image} as ${format}`);
    ctx.facts.format = format;
    await extractImage(o.image, format, ctx.root, { log: ctx.log, signal: ctx.signal, workDir: ctx.workDir });
  },
});
