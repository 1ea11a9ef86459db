/**
 * squashfs: pack the sealed root. zstd level 3 packs a server root in ~2 s where mksquashfs'
 * default zstd level 15 or xz take 45–240 s (docs/architecture.md#compression): fast by default, xz or a higher
 * level for release channels. All cores.
 */
import os from "node:os";
import path from "node:path";
import { copyFile } from "node:fs/promises";
import { defineArtifactStage } from "./stage.js";

export interface SquashfsOptions {
  compression: "zstd" | "xz";
  level?: number;
}

export const squashfs = defineArtifactStage<SquashfsOptions>({
  kind: "squashfs",
  summary: "Pack the sealed root into a squashfs image",
  tools: ["mksquashfs"],
  needsRoot: true,
  async run(ctx, o) {
    const out = path.join(ctx.outputs, "squashfs");
    const comp = o.compression === "zstd" ? ["-comp", "zstd", "-Xcompression-level", String(o.level ?? 3)] : ["-comp", "xz"];
    // -progress draws a bar on stdout even when it is not a terminal; the engine turns it into progress events.
    // prettier-ignore
    await ctx.exec(["mksquashfs", ctx.root, out, ...comp, "-noappend", "-xattrs", "-processors", String(os.cpus().length), "-progress"], {
      onLine: (line) => {
        const m = /\]\s+\d+\/\d+\s+(\d+)%\s*$/.exec(line);
        if (m) ctx.progress(Number(m[1]) / 100);
        return m !== null;
      },
    });
  },
});

/** An unchanged import of a squashfs publishes the original file, byte for byte (as maas-images does). */
export const squashfsCopy = defineArtifactStage<{ image: string }>({
  kind: "squashfs-copy",
  summary: "Publish the imported squashfs unchanged",
  tools: [],
  needsRoot: false,
  async run(ctx, o) {
    await copyFile(o.image, path.join(ctx.outputs, "squashfs"));
    ctx.log.line(`copied ${o.image} unchanged`);
  },
});
