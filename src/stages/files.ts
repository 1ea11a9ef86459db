/**
 * files: write files into the image, with mode and owner. Paths are resolved inside the image
 * (its symlinks are followed as the image would follow them, never onto the host).
 */
import { chmod, chown, copyFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { KilnError } from "../errors.js";
import { mkdirInRoot, resolveInRoot } from "../host/root-path.js";
import { resolveOwner } from "./image-accounts.js";
import { defineLayerStage } from "./stage.js";

export interface FileOptions {
  path: string;
  content?: string;
  sourceFile?: string;
  mode: string;
  owner: string;
}

export const files = defineLayerStage<{ files: FileOptions[] }>({
  kind: "files",
  summary: "Write files into the image",
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
