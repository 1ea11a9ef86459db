/**
 * manifest: the package manifest `squashfs.manifest`, one `name<TAB>version` line per installed
 * package, exactly as `dpkg-query --show` prints it (maas-images writes it the same way, with
 * `:amd64` on Multi-Arch: same packages).
 */
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { z } from "zod";
import { defineArtifactStage } from "./stage.js";

export const manifest = defineArtifactStage({
  kind: "manifest",
  summary: "List the installed packages (squashfs.manifest)",
  options: z.strictObject({}),
  facts: z.object({ packages: z.int() }),
  plan: ({ wants }) => (wants.has("manifest") ? [{ options: {} }] : []),
  outputs: [{ file: "squashfs.manifest", artifact: "manifest", output: "manifest" }],
  tools: ["dpkg-query"],
  needsRoot: true,
  async run(ctx) {
    const r = await ctx.exec(["dpkg-query", `--admindir=${path.join(ctx.root, "var/lib/dpkg")}`, "--show"], {
      captureStdout: true,
      quietStdout: true,
    });
    const lines = r.stdout.split("\n").filter((l) => l.trim() !== "");
    await writeFile(path.join(ctx.outputs, "squashfs.manifest"), lines.join("\n") + "\n");
    ctx.log.line(`${lines.length} packages`);
    ctx.facts.packages = lines.length;
  },
});
