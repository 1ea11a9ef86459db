/**
 * `kiln streams …`: publish builds as a MAAS v3 simplestreams tree, promote between labels, keep
 * the bootloader products, sync many images, check any stream, export the signing key. The work
 * is in src/streams/; this file declares the commands and renders their reports.
 */
import { Command, Option } from "commander";
import { KilnError } from "../../errors.js";
import type { CommandIo } from "../io.js";

const DEFAULT_CACHE = process.env.KILN_CACHE_DIR ?? "/var/cache/kiln";

export function registerStreamsCommands(program: Command, io: CommandIo, setExit: (code: number) => void): void {
  const streams = program.command("streams").description("Publish builds as a simplestreams tree MAAS imports, and check streams");
  const out = (lines: string[]) => io.stdout.write(lines.map((l) => l + "\n").join(""));

  const stream = (c: Command, withLabel = true) =>
    (withLabel ? c.option("--label <label>", "candidate or stable", "candidate") : c)
      .option("--prefix <prefix>", "product name prefix (products are <prefix>.<label>:v3:boot:…)", "org.kiln")
      .option("--content-id <id>", "content id of the image products; {label} is replaced (default <prefix>:{label}:v3:download)")
      .option("--sign-key <key>", "sign with this OpenPGP key: a secret key file, or a key id in your GnuPG keyring")
      .option("--passphrase-file <file>", "passphrase of --sign-key, if it has one")
      .option("--keep <n>", "keep this many versions per product", (v) => positiveInt("--keep", v))
      .option("--grace <duration>", "how long unreferenced files stay before they are deleted", "3d")
      .option("--json", "print the report as JSON", false);

  stream(
    streams
      .command("publish")
      .description("Add builds (kiln build out dirs) to a stream as new versions")
      .argument("<out...>", "out dirs of kiln builds")
      .requiredOption("--to <dir>", "the stream folder (created if missing)")
      .option("--subarch <name>", "MAAS subarch of the products", "generic")
      .option("--flavor <name...>", "only these kernel flavors")
      .addOption(new Option("--os <os>", "os, when result.json does not say (an imported base)"))
      .addOption(new Option("--release <release>", "release codename, when result.json does not say"))
      .addOption(new Option("--arch <arch>", "dpkg architecture, when result.json does not say")),
  )
    .addHelpText("after", "\nExamples:\n  kiln streams publish out --to /srv/streams\n  kiln streams publish out-a out-b --to /srv/streams --keep 3 --sign-key ./stream-key.asc")
    .action(async (outs: string[], o) => {
      const { publish, describePublish } = await import("../../streams/publish.js");
      const common = await commonOptions(o);
      try {
        const r = await publish(outs, {
          to: o.to, label: o.label, naming: common.naming, keep: o.keep, graceSeconds: common.graceSeconds, now: new Date(), signer: common.signer,
          subarch: o.subarch, flavors: o.flavor, image: { os: o.os, release: o.release, arch: o.arch },
        });
        if (o.json) out([JSON.stringify(r, null, 2)]);
        else out(describePublish(r));
        setExit(0);
      } finally {
        await common.signer?.close();
      }
    });

  stream(
    streams
      .command("promote")
      .description("Copy products from one label to another (candidate → stable); files are shared, not copied")
      .argument("<stream>", "the stream folder")
      .requiredOption("--from <label>", "source label, e.g. candidate")
      .requiredOption("--to <label>", "target label, e.g. stable")
      .option("--version <version>", "promote this version instead of each product's newest"),
    false,
  )
    .addHelpText("after", "\nExample:\n  kiln streams promote /srv/streams --from candidate --to stable --sign-key ./stream-key.asc")
    .action(async (dir: string, o) => {
      const { promote } = await import("../../streams/promote.js");
      const { describeOrphans } = await import("../../streams/publish.js");
      const common = await commonOptions({ ...o, label: o.to });
      try {
        const r = await promote({ stream: dir, from: o.from, to: o.to, naming: common.naming, version: o.version, keep: o.keep, graceSeconds: common.graceSeconds, now: new Date(), signer: common.signer });
        if (o.json) out([JSON.stringify(r, null, 2)]);
        else {
          out(r.promoted.map((p) => `promoted ${p.from} ${p.version} → ${p.to}`));
          out(r.already.map((p) => `already there: ${p.product} ${p.version}`));
          out(describeOrphans(r.orphans));
        }
        setExit(0);
      } finally {
        await common.signer?.close();
      }
    });

  stream(
    streams
      .command("bootloaders")
      .description("Add or update the bootloader products (shim + signed GRUB for UEFI, pxelinux for BIOS) from Debian's packages")
      .requiredOption("--to <dir>", "the stream folder")
      .option("--release <release>", "Debian release to take the loaders from (default: this host's)")
      .option("--cache-dir <dir>", "where apt's private lists are kept (env KILN_CACHE_DIR)", DEFAULT_CACHE),
  ).action(async (o) => {
    const { publishBootloaders } = await import("../../streams/bootloaders.js");
    const { describeOrphans } = await import("../../streams/publish.js");
    const path = await import("node:path");
    const common = await commonOptions(o);
    try {
      const r = await publishBootloaders({
        to: o.to, label: o.label, naming: common.naming, release: o.release, aptDir: path.join(o.cacheDir, "streams", "apt-bootloaders"),
        keep: o.keep, graceSeconds: common.graceSeconds, now: new Date(), signer: common.signer,
      });
      if (o.json) out([JSON.stringify(r, null, 2)]);
      else {
        out(r.products.map((p) => `${p.isNew ? "published" : "unchanged"} ${p.name} ${p.version}: ${Object.entries(p.items).map(([k, v]) => `${k} ${v}`).join(", ")}`));
        out(describeOrphans(r.orphans));
      }
      setExit(0);
    } finally {
      await common.signer?.close();
    }
  });

  streams
    .command("sync")
    .description("Build and publish every image of a sync config that has something new (recipe or packages), then apply retention")
    .argument("<config>", "sync config (YAML; see docs/streams.md)")
    .option("--cache-dir <dir>", "layer and package cache (env KILN_CACHE_DIR)", DEFAULT_CACHE)
    .option("--dry-run", "say what is due, build nothing", false)
    .option("--json", "print the report as JSON", false)
    .option("-v, --verbose", "print every build stage's full log", false)
    .addHelpText("after", "\nExample:\n  kiln streams sync /etc/kiln/streams.yaml")
    .action(async (file: string, o) => {
      const { loadSyncConfig, sync, describeSync } = await import("../../streams/sync.js");
      const { describePublish } = await import("../../streams/publish.js");
      const { createRenderer } = await import("../render.js");
      const c = await loadSyncConfig(file);
      const { openSigner } = await import("../../streams/sign.js");
      const signer = c.signKey ? await openSigner(c.signKey, { passphraseFile: c.passphraseFile }) : undefined;
      const r = createRenderer({ json: false, verbose: o.verbose, stream: o.json ? io.stderr : io.stdout });
      try {
        const report = await sync(c, { cacheDir: o.cacheDir, signer, dryRun: o.dryRun, signal: io.signal, emit: r.emit, say: (l) => (o.json ? io.stderr : io.stdout).write(l + "\n") });
        if (o.json) out([JSON.stringify(report, null, 2)]);
        else {
          for (const p of report.published) out(describePublish(p));
          if (o.dryRun) out([`dry run: ${report.decisions.filter((d) => d.due).length} of ${report.decisions.length} images due`]);
          else out(describeSync(report));
        }
        setExit(0);
      } finally {
        r.stop();
        await signer?.close();
      }
    });

  streams
    .command("check")
    .description("Check a stream against every rule MAAS and the simplestreams client apply; exit 1 listing each violation")
    .argument("<stream>", "stream folder or URL (its root, or its streams/v1/index.json)")
    .option("--keyring <file>", "check every signature with this public keyring (what a MAAS boot source is given)")
    .option("--no-files", "check the metadata only; do not download and hash the files")
    .option("--json", "print the report as JSON", false)
    .addHelpText("after", "\nExamples:\n  kiln streams check /srv/streams\n  kiln streams check http://mirror.example/streams/ --keyring stream-key.gpg")
    .action(async (where: string, o) => {
      const { checkStream, describeViolations, openSource } = await import("../../streams/check.js");
      const t0 = Date.now();
      const r = await checkStream(openSource(where), { keyring: o.keyring, files: o.files });
      if (o.json) out([JSON.stringify(r, null, 2)]);
      else {
        out(describeViolations(r));
        const sigs = o.keyring ? `, ${r.signaturesChecked} signatures` : ", signatures not checked (no --keyring)";
        out([`${r.violations.length === 0 ? "ok" : `${r.violations.length} violations`}: ${r.products} products, ${r.versions} versions, ${r.files} files (${(r.bytes / 1048576).toFixed(1)} MiB) hashed${sigs} in ${((Date.now() - t0) / 1000).toFixed(1)} s`]);
      }
      setExit(r.violations.length === 0 ? 0 : 1);
    });

  streams
    .command("export-key")
    .description("Write the public key of a signing key as a binary keyring (a MAAS boot source's keyring_filename)")
    .argument("<key>", "secret key file, or key id in your GnuPG keyring")
    .requiredOption("-o, --out <file>", "where the keyring goes")
    .action(async (key: string, o) => {
      const { openSigner } = await import("../../streams/sign.js");
      const signer = await openSigner(key);
      try {
        await signer.exportPublicKey(o.out);
        out([`wrote ${o.out} (public key ${signer.fingerprint}, binary)`]);
        setExit(0);
      } finally {
        await signer.close();
      }
    });
}

async function commonOptions(o: { label: string; prefix: string; contentId?: string; signKey?: string; passphraseFile?: string; grace: string }) {
  const { checkNaming } = await import("../../streams/names.js");
  const { parseDuration } = await import("../../streams/retention.js");
  const naming = { prefix: o.prefix, contentId: o.contentId };
  checkNaming(naming, [o.label]);
  const graceSeconds = parseDuration(o.grace);
  if (graceSeconds === undefined) throw new KilnError("USAGE", `--grace ${o.grace}: not a duration; use e.g. 3d, 12h or 0`);
  const { openSigner } = await import("../../streams/sign.js");
  const signer = o.signKey ? await openSigner(o.signKey, { passphraseFile: o.passphraseFile }) : undefined;
  return { naming, graceSeconds, signer };
}

function positiveInt(flag: string, v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new KilnError("USAGE", `${flag} ${v}: use a whole number of at least 1`);
  return n;
}
