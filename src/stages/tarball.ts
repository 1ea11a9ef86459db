/**
 * tarball: the sealed root as `rootfs.tar.zst` (numeric owners, xattrs, hard links kept), for
 * tools that want a root tarball (container imports, IMS-style root archives). zstd on all
 * cores: a gzip of a 320 MiB root costs tens of seconds on two cores, zstd -T0 a few.
 *
 * Reproducible (docs/reproducible.md): entries sorted by name, PAX format without atime and
 * ctime, PAX header names without the process id, mtimes clamped to the build's epoch.
 * zstd's output does not depend on its number of threads.
 */
import path from "node:path";
import { z } from "zod";
import { defineArtifactStage } from "./stage.js";

export const tarball = defineArtifactStage({
  kind: "tarball",
  summary: "Pack the sealed root into rootfs.tar.zst",
  options: z.strictObject({}),
  plan: ({ wants }) => (wants.has("tarball") ? [{ options: {} }] : []),
  outputs: [{ file: "rootfs.tar.zst", artifact: "tarball", output: "tarball" }],
  tools: ["tar", "zstd"],
  needsRoot: true,
  async run(ctx) {
    const out = path.join(ctx.outputs, "rootfs.tar.zst");
    const clamp = ctx.epoch === undefined ? [] : [`--mtime=@${ctx.epoch}`, "--clamp-mtime"];
    // prettier-ignore
    await ctx.exec(["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "--acls", "--sort=name",
      "--format=posix", "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime", ...clamp,
      "-I", "zstd -T0 -3", "-C", ctx.root, "-cf", out, "."]);
  },
});
