/**
 * packages: install the recipe's packages, then upgrade the `upgrade` list from the extra
 * repositories. The upgrade is the -proposed/PPA case of maas-images' bin/maas-cloudimg2ephemeral: the
 * named packages, and only those, come from the extra suites; a temporary pin at 990 does that
 * without changing how the image resolves anything else later.
 */
import { rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { mkdirInRoot } from "../host/root-path.js";
import { z } from "zod";
import { defineLayerStage } from "./stage.js";

const PackagesOptions = z.strictObject({
  install: z.array(z.string()),
  upgrade: z.array(z.string()),
  /** Suites of the extra repositories, where `upgrade` packages come from. */
  upgradeSuites: z.array(z.string()),
});
export type PackagesOptions = z.output<typeof PackagesOptions>;

export const packages = defineLayerStage({
  kind: "packages",
  summary: "Install packages and upgrade from extra repositories",
  options: PackagesOptions,
  facts: z.object({ versions: z.record(z.string(), z.string()).optional() }),
  plan({ recipe: r }) {
    // config.apparmor: true needs the apparmor package (its parser and profiles) in the image.
    const install = r.config.apparmor === true && !r.packages.some((p) => /^apparmor([=/]|$)/.test(p)) ? [...r.packages, "apparmor"] : r.packages;
    if (install.length + r.upgrade.length === 0) return [];
    return [{ options: { install, upgrade: r.upgrade, upgradeSuites: r.repositories.map((x) => x.suite) } }];
  },
  base: false,
  tools: ["chroot"],
  async run(ctx, o) {
    const s = await ctx.chroot();
    await s.apt(["update"]);
    if (o.install.length > 0) await s.apt(["install", ...o.install]);
    if (o.upgrade.length > 0) {
      const prefs = await mkdirInRoot(ctx.root, "/etc/apt/preferences.d");
      const pinFile = path.join(prefs, "kiln-upgrade.pref");
      const stanzas = o.upgradeSuites.map(
        (suite) => `Package: ${o.upgrade.join(" ")}\nPin: release n=${suite}\nPin-Priority: 990\n`,
      );
      await writeFile(pinFile, stanzas.join("\n"));
      try {
        await s.apt(["install", ...o.upgrade]);
      } finally {
        await rm(pinFile, { force: true });
      }
    }
    const names = [...o.install, ...o.upgrade].map((p) => p.replace(/[=/].*$/, ""));
    if (names.length > 0) {
      const r = await s.run(["dpkg-query", "-W", "-f", "${Package}\\t${Version}\\n", ...names], { captureStdout: true, quietStdout: true });
      ctx.facts.versions = Object.fromEntries(r.stdout.trim().split("\n").map((l) => l.split("\t")));
      for (const l of r.stdout.trim().split("\n")) ctx.log.line(`installed ${l.replace("\t", " ")}`);
    }
  },
});
