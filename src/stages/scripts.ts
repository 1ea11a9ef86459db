/**
 * scripts: run the recipe's scripts in the image, in order, with /bin/sh -e. Each script is
 * placed in the session's /tmp (a tmpfs), so it does not end up in the layer.
 */
import { copyFile, writeFile, chmod } from "node:fs/promises";
import path from "node:path";
import { resolveInRoot } from "../host/root-path.js";
import { defineLayerStage } from "./stage.js";

export interface ScriptOptions {
  name: string;
  run?: string;
  sourceFile?: string;
}

export const scripts = defineLayerStage<{ scripts: ScriptOptions[]; recipeName: string }>({
  kind: "scripts",
  summary: "Run the recipe's scripts in the image",
  base: false,
  tools: ["chroot"],
  async run(ctx, o) {
    const s = await ctx.chroot();
    const tmp = await resolveInRoot(ctx.root, "/tmp");
    for (const script of o.scripts) {
      const inImage = `/tmp/kiln-script-${script.name}`;
      const host = path.join(tmp, path.basename(inImage));
      if (script.sourceFile) await copyFile(script.sourceFile, host);
      else await writeFile(host, script.run ?? "");
      await chmod(host, 0o755);
      ctx.log.line(`--- script ${script.name}`);
      await s.run(["/bin/sh", "-e", inImage], { env: { KILN_RECIPE: o.recipeName, KILN_SCRIPT: script.name } });
    }
  },
});
