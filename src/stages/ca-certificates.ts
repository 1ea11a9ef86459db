/**
 * ca-certificates: add site CA certificates to the image's trust store with the image's own
 * update-ca-certificates (so /etc/ssl/certs and the bundle agree, as Debian maintains them).
 */
import { access, copyFile } from "node:fs/promises";
import path from "node:path";
import { KilnError } from "../errors.js";
import { mkdirInRoot, resolveInRoot } from "../host/root-path.js";
import { z } from "zod";
import { defineLayerStage } from "./stage.js";

export const caCertificates = defineLayerStage({
  kind: "ca-certificates",
  summary: "Add CA certificates to the image's trust store",
  options: z.strictObject({ certificates: z.array(z.string()) }),
  plan({ recipe: r, digestOf, ref }) {
    if (r.caCertificates.length === 0) return [];
    const inputs = Object.fromEntries(r.caCertificates.map((c, i) => [`caCertificates[${i}]`, digestOf(c)]));
    return [{ options: { certificates: r.caCertificates.map((c, i) => ref(`caCertificates[${i}]`, c)) }, inputs }];
  },
  base: false,
  tools: ["chroot"],
  async run(ctx, o) {
    try {
      await access(await resolveInRoot(ctx.root, "/usr/sbin/update-ca-certificates"));
    } catch {
      throw new KilnError("STAGE_FAILED", "caCertificates: the image has no update-ca-certificates", {
        hint: 'add "ca-certificates" to the recipe\'s packages',
      });
    }
    const dir = await mkdirInRoot(ctx.root, "/usr/local/share/ca-certificates/kiln");
    for (const cert of o.certificates) {
      // update-ca-certificates only picks up files ending in .crt.
      const name = path.basename(cert).replace(/\.(pem|crt|cer)$/i, "") + ".crt";
      await copyFile(cert, path.join(dir, name));
      ctx.log.line(`added ${name}`);
    }
    const s = await ctx.chroot();
    await s.run(["update-ca-certificates"]);
  },
});
