/**
 * squashfs: pack the sealed root. zstd level 3 packs a server root in ~2 s where mksquashfs'
 * default zstd level 15 or xz take 45–240 s (docs/architecture.md#compression): fast by default, xz or a higher
 * level for release channels. All cores.
 *
 * Reproducible (docs/reproducible.md): mksquashfs (4.4 on) orders entries itself and writes the
 * same bytes whatever the number of processors; SOURCE_DATE_EPOCH, in the environment of every
 * stage's tools, is its file system time, and every file time after it is clamped to it.
 */
import os from "node:os";
import path from "node:path";
import { copyFile } from "node:fs/promises";
import { z } from "zod";
import { defineArtifactStage } from "./stage.js";

const SquashfsOptions = z.strictObject({ compression: z.enum(["zstd", "xz"]), level: z.int().optional() });
export type SquashfsOptions = z.output<typeof SquashfsOptions>;

/** The ISO carries the squashfs, so it is made (and cached) even when out/ does not ask for it. */
const squashfsNeeded = (wants: ReadonlySet<string>) => wants.has("squashfs") || wants.has("iso");
const SQUASHFS_OUTPUTS = [{ file: "squashfs", artifact: "squashfs", output: "squashfs" }] as const;

export const squashfs = defineArtifactStage({
  kind: "squashfs",
  summary: "Pack the sealed root into a squashfs image",
  options: SquashfsOptions,
  plan({ recipe: r, wants, planned }) {
    if (!squashfsNeeded(wants) || planned("squashfs-copy").length > 0) return [];
    return [{ options: r.squashfs.compression === "xz" ? { compression: "xz" } : { compression: "zstd", level: r.squashfs.level ?? 3 } }];
  },
  outputs: SQUASHFS_OUTPUTS,
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
export const squashfsCopy = defineArtifactStage({
  kind: "squashfs-copy",
  summary: "Publish the imported squashfs unchanged",
  options: z.strictObject({ image: z.string() }),
  plan({ recipe: r, wants, unchangedImport, host, digestOf, ref }) {
    if (!squashfsNeeded(wants) || !unchangedImport || !("image" in r.base) || (host.importFormat ?? r.base.format) !== "squashfs") return [];
    return [{ name: "squashfs", options: { image: ref("base.image", r.base.image) }, inputs: { "base.image": digestOf(r.base.image) }, parent: null }];
  },
  outputs: SQUASHFS_OUTPUTS,
  tools: [],
  needsRoot: false,
  async run(ctx, o) {
    await copyFile(o.image, path.join(ctx.outputs, "squashfs"));
    ctx.log.line(`copied ${o.image} unchanged`);
  },
});
