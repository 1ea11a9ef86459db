/**
 * site-ca: the service's site CA certificates (`kiln serve --site-ca`), added to every image a
 * create or customize job produces, as IMS adds its CA RPM to every image. They go into
 * /usr/local/share/ca-certificates/kiln-site/ and, when the image has ca-certificates, into its
 * trust store with the image's own update-ca-certificates. An image without that package still
 * gets the files (a later `apt install ca-certificates` picks them up), and the log says so:
 * failing a site-wide injection on every minimal image would be worse than a warning.
 */
import { access, copyFile, readFile } from "node:fs/promises";
import path from "node:path";
import { KilnError } from "../errors.js";
import { mkdirInRoot, resolveInRoot } from "../host/root-path.js";
import { z } from "zod";
import { defineLayerStage } from "./stage.js";

export const SITE_CA_DIR = "/usr/local/share/ca-certificates/kiln-site";

export const siteCa = defineLayerStage({
  kind: "site-ca",
  summary: "Add the service's site CA certificates to the image's trust store",
  options: z.strictObject({ certificates: z.array(z.string()) }),
  plan({ host, ref }) {
    const siteCas = Object.entries(host.siteCas ?? {});
    if (siteCas.length === 0) return [];
    const inputs = Object.fromEntries(siteCas.map(([, digest], i) => [`siteCa[${i}]`, digest]));
    return [{ options: { certificates: siteCas.map(([file], i) => ref(`siteCa[${i}]`, file)) }, inputs }];
  },
  base: false,
  tools: ["chroot"],
  async run(ctx, o) {
    const dir = await mkdirInRoot(ctx.root, SITE_CA_DIR);
    for (const cert of o.certificates) {
      if (!/-----BEGIN CERTIFICATE-----/.test(await readFile(cert, "utf8"))) {
        // The operator's file, not Kiln, is at fault: a coded error names it (a plain Error reads as a bug).
        const message = `site CA ${cert} is not a PEM certificate (no BEGIN CERTIFICATE line)`;
        throw new KilnError("INPUT_INVALID", message, {
          problems: [{ path: "--site-ca", message }],
          hint: "give --site-ca (KILN_SITE_CA) PEM certificate files",
        });
      }
      // update-ca-certificates only picks up files ending in .crt.
      const name = path.basename(cert).replace(/\.(pem|crt|cer)$/i, "") + ".crt";
      await copyFile(cert, path.join(dir, name));
      ctx.log.line(`added site CA ${SITE_CA_DIR}/${name}`);
    }
    try {
      await access(await resolveInRoot(ctx.root, "/usr/sbin/update-ca-certificates"));
    } catch {
      ctx.log.line("warning: the image has no ca-certificates package: the site CAs are in place but not in a trust store (installing ca-certificates later adds them)");
      return;
    }
    const s = await ctx.chroot();
    await s.run(["update-ca-certificates"]);
  },
});
