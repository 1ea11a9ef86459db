/**
 * `kiln iso OUT --seed DIR`: a site's live ISO from a finished build, in seconds: the build's ISO
 * re-mastered with a cloud-init NoCloud seed or config drive (src/stages/live/seed.ts), its
 * squashfs, kernel and initrd unchanged. `--verify` boots it and checks cloud-init applied the seed.
 */
import path from "node:path";
import type { Command } from "commander";
import { openStageLog } from "../../engine/stage-log.js";
import { KilnError } from "../../errors.js";
import { createWorkDir } from "../../host/workdir.js";
import type { CommandIo } from "../io.js";

const DEFAULT_CACHE = process.env.KILN_CACHE_DIR ?? "/var/cache/kiln";

export function registerIsoCommands(program: Command, io: CommandIo, setExit: (code: number) => void): void {
  program
    .command("iso")
    .description("Make a site's live ISO from a build: its ISO plus a cloud-init seed (NoCloud or config drive), no rebuild")
    .argument("<out>", "the out dir of a build whose outputs include iso")
    .requiredOption("--seed <dir>", "meta-data + user-data (+ network-config), or openstack/latest/meta_data.json")
    .option("--name <name>", "name of the seeded ISO (default: the seed folder's name): <out>/<flavor>/live-<name>.iso")
    .option("--verify", "boot it (UEFI, as a CD) and check the guest got the seed's hostname", false)
    .option("--timeout <seconds>", "for the boot", (v) => Number(v))
    .option("--cache-dir <dir>", "where the work dir goes (env KILN_CACHE_DIR)", DEFAULT_CACHE)
    .option("--json", "print the seeded ISO's entry (and the verify result) as JSON", false)
    .addHelpText("after", "\nExamples:\n  kiln iso out --seed sites/site-a\n  kiln iso out --seed sites/site-a --name rack12 --verify")
    .action(async (out: string, o: { seed: string; name?: string; verify: boolean; timeout?: number; cacheDir: string; json: boolean }) => {
      if (o.timeout !== undefined && !(Number.isFinite(o.timeout) && o.timeout > 0)) {
        throw new KilnError("USAGE", "--timeout: give the seconds the boot may take, a positive number, e.g. --timeout 300");
      }
      const { readBuildResult, verifyOut } = await import("../../verify/verify-out.js");
      const { seedIso } = await import("../../stages/live/seed.js");
      const result = await readBuildResult(out);
      const log = openStageLog(out, "iso-seed", () => {});
      const work = await createWorkDir(o.cacheDir, log).catch(() => undefined);
      try {
        const entry = await seedIso(out, result, { seedDir: o.seed, name: o.name, log, signal: io.signal, workDir: work?.path });
        const label = entry.seed.datasource === "nocloud" ? "NoCloud, label CIDATA" : "config drive, label config-2";
        const lines = [`seeded ISO ${path.join(out, entry.path)} (${label}${entry.seed.hostname ? `, hostname ${entry.seed.hostname}` : ""}) in ${entry.seed.seconds.toFixed(1)} s; squashfs, kernel and initrd unchanged`];
        let ok = true;
        let verify;
        if (o.verify) {
          verify = await verifyOut(out, { targets: [`iso-seeded:${entry.seed.name}`], signal: io.signal, log, workDir: work?.path, timeoutSeconds: o.timeout });
          for (const v of verify) {
            ok &&= v.ok;
            lines.push(v.ok ? `✓ booted in ${v.seconds.toFixed(1)} s with hostname ${v.hostname ?? "?"}  (${v.log})` : `✗ ${v.reason ?? "failed"}  (${v.log})`);
          }
        }
        io.stdout.write(o.json ? JSON.stringify({ seeded: entry, ...(verify ? { verify } : {}) }, null, 2) + "\n" : lines.join("\n") + "\n");
        setExit(ok ? 0 : 1);
      } finally {
        await work?.release().catch(() => {});
        await log.close();
      }
    });
}
