/**
 * scripts: run the recipe's scripts in the image, in order, with /bin/sh -e. Each script is
 * placed in the session's /tmp (a tmpfs), so it does not end up in the layer.
 */
import { copyFile, writeFile, chmod } from "node:fs/promises";
import path from "node:path";
import { resolveInRoot } from "../host/root-path.js";
import { z } from "zod";
import { defineLayerStage } from "./stage.js";

const ScriptOptions = z.strictObject({ name: z.string(), run: z.string().optional(), sourceFile: z.string().optional() });
export type ScriptOptions = z.output<typeof ScriptOptions>;

export const scripts = defineLayerStage({
  kind: "scripts",
  summary: "Run the recipe's scripts in the image",
  options: z.strictObject({ scripts: z.array(ScriptOptions), recipeName: z.string() }),
  plan({ recipe: r, digestOf, ref }) {
    if (r.scripts.length === 0) return [];
    const inputs: Record<string, string> = {};
    const scripts = r.scripts.map((s, i) => {
      if (s.source) inputs[`scripts[${i}].source`] = digestOf(s.source);
      return { name: s.name, run: s.run, sourceFile: s.source ? ref(`scripts[${i}].source`, s.source) : undefined };
    });
    return [{ options: { scripts, recipeName: r.name }, inputs }];
  },
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
