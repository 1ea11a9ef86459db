/**
 * files: write files into the image, with mode and owner. Paths are resolved inside the image
 * (its symlinks are followed as the image would follow them, never onto the host).
 */
import { chmod, chown, copyFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { KilnError } from "../errors.js";
import { mkdirInRoot, resolveInRoot } from "../host/root-path.js";
import { resolveOwner } from "./image-accounts.js";
import { z } from "zod";
import { defineLayerStage } from "./stage.js";

const FileOptions = z.strictObject({ path: z.string(), content: z.string().optional(), sourceFile: z.string().optional(), mode: z.string(), owner: z.string() });
export type FileOptions = z.output<typeof FileOptions>;

export const files = defineLayerStage({
  kind: "files",
  summary: "Write files into the image",
  options: z.strictObject({ files: z.array(FileOptions) }),
  plan({ recipe: r, digestOf, ref }) {
    if (r.files.length === 0) return [];
    const inputs: Record<string, string> = {};
    const files = r.files.map((f, i) => {
      if (f.source) inputs[`files[${i}].source`] = digestOf(f.source);
      return { path: f.path, content: f.content, sourceFile: f.source ? ref(`files[${i}].source`, f.source) : undefined, mode: f.mode, owner: f.owner };
    });
    return [{ options: { files }, inputs }];
  },
  base: false,
  tools: [],
  async run(ctx, o) {
    for (const [i, f] of o.files.entries()) {
      let ids;
      try {
        ids = await resolveOwner(ctx.root, f.owner);
      } catch (e) {
        throw new KilnError("STAGE_FAILED", `files[${i}].owner: ${(e as Error).message}`);
      }
      await mkdirInRoot(ctx.root, path.posix.dirname(f.path));
      const target = await resolveInRoot(ctx.root, f.path);
      if (f.sourceFile) await copyFile(f.sourceFile, target);
      else await writeFile(target, f.content ?? "");
      await chown(target, ids.uid, ids.gid);
      await chmod(target, parseInt(f.mode, 8));
      ctx.log.line(`wrote ${f.path} (${f.mode} ${f.owner})`);
    }
  },
});
