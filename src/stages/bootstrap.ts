/**
 * bootstrap: a Debian root from the archive with mmdebstrap (docs/architecture.md#bootstrap). The apt archive
 * cache is synced in and out with mmdebstrap's own special hooks, so each .deb downloads once
 * across builds. mmdebstrap copies the host's hostname and resolv.conf into the root; they are
 * reset here so no host detail is baked into an image.
 */
import { writeFile, rm } from "node:fs/promises";
import path from "node:path";
import { defineLayerStage } from "./stage.js";

export interface BootstrapOptions {
  suite: string;
  variant: string;
  /** Complete apt lines (`deb URI SUITE COMPONENTS`); the first is the primary mirror. */
  aptLines: string[];
}

export const bootstrap = defineLayerStage<BootstrapOptions>({
  kind: "bootstrap",
  summary: "Bootstrap a Debian root filesystem with mmdebstrap",
  base: true,
  tools: ["mmdebstrap"],
  async run(ctx, o) {
    const cache = ctx.aptArchives;
    // prettier-ignore
    await ctx.exec([
      "mmdebstrap", "--mode=root", `--variant=${o.variant}`,
      "--aptopt=Acquire::Retries \"3\";",
      "--skip=essential/unlink",
      "--setup-hook=mkdir -p \"$1\"/var/cache/apt/archives/",
      `--setup-hook=sync-in ${cache} /var/cache/apt/archives/`,
      `--customize-hook=sync-out /var/cache/apt/archives ${cache}`,
      o.suite, ctx.root, ...o.aptLines,
    ], { env: ctx.env });
    // The root was made by us just now, so these are plain files, not image symlinks.
    await writeFile(path.join(ctx.root, "etc/hostname"), "localhost\n");
    await rm(path.join(ctx.root, "etc/resolv.conf"), { force: true });
    await writeFile(path.join(ctx.root, "etc/resolv.conf"), "");
  },
});
