#!/usr/bin/env node
/**
 * The `kiln` command. Commands are declared here with their options and examples; their code
 * lives in src/cli/commands/<name>.ts and is imported when the command runs, so `kiln --help`
 * stays fast.
 *
 * Exit codes: 0 ok, 1 a stage or a boot failed, 2 bad input (recipe, image, command line),
 * 3 host not ready (root, tools), 130/143 cancelled. A KilnError prints its message and hint;
 * anything else is a bug and prints a stack with a request to report it.
 */
import { Command, CommanderError, Option } from "commander";
import { isKilnError } from "../errors.js";
import { killAllChildren } from "../host/exec.js";
import { KILN_VERSION } from "../version.js";
import type { CommandIo } from "./io.js";
import { registerStreamsCommands } from "./commands/streams.js";
import { registerServiceCommands } from "./commands/service.js";
import { registerIsoCommands } from "./commands/iso.js";
import { registerDiffCommand } from "./commands/diff.js";

const DEFAULT_CACHE = process.env.KILN_CACHE_DIR ?? "/var/cache/kiln";

function cacheOption(): Option {
  return new Option("--cache-dir <dir>", "layer and package cache (env KILN_CACHE_DIR)").default(DEFAULT_CACHE);
}

export function buildProgram(io: CommandIo, setExit: (code: number) => void): Command {
  const program = new Command("kiln")
    .description("Image factory for bare-metal fleets: recipes or cloud images in, boot-verified artifacts out")
    .version(KILN_VERSION)
    .showHelpAfterError()
    .exitOverride();

  program
    .command("build")
    .description("Build a recipe into out/: squashfs, kernel + initrd per flavor, manifests")
    .argument("<recipe>", "recipe file (YAML, apiVersion kiln/v1)")
    .option("-o, --out <dir>", "where artifacts go", "out")
    .addOption(cacheOption())
    .option("--no-cache", "rebuild every stage")
    .option("--from <stage>", "rebuild from this stage on (see kiln plan)")
    .option("--verify", "boot-verify every flavor (default: the recipe's verify)")
    .option("--no-verify", "skip boot verification")
    .option("--reverify", "boot even when these very bytes booted before (cached boot results)", false)
    .option("-j, --jobs <n>", "stages and boot vCPUs at once (default: the cores, at most one per GiB of available memory)")
    .option("--sign-key <key>", "sign out/SHA256SUMS (SHA256SUMS.gpg) with this OpenPGP key: a secret key file, or a key id in your GnuPG keyring")
    .option("--passphrase-file <file>", "passphrase of --sign-key, if it has one")
    .option("--lock <file>", "install exactly the package versions of this kiln.lock (an out dir's; docs/lock.md)")
    .option("--json", "JSON lines instead of progress text", false)
    .option("-v, --verbose", "print every stage's full log", false)
    .addHelpText("after", "\nExamples:\n  kiln build examples/server.yaml\n  kiln build recipe.yaml --lock out/kiln.lock\n  kiln build recipe.yaml --out /srv/images/web --no-verify\n  kiln build recipe.yaml --from files -v\n  kiln build recipe.yaml --sign-key ops@example.org")
    .action(async (recipe: string, o) => {
      const { buildCommand } = await import("./commands/build.js");
      setExit(await buildCommand(recipe, { out: o.out, cacheDir: o.cacheDir, cache: o.cache, from: o.from, verify: o.verify, reverify: o.reverify, jobs: o.jobs, signKey: o.signKey, passphraseFile: o.passphraseFile, lock: o.lock, json: o.json, verbose: o.verbose }, io));
    });

  program
    .command("rebuild")
    .description("Build an out dir's recipe again from its kiln.lock in a scratch cache; report per artifact identical or different")
    .argument("<out>", "a build's out dir (its result.json names the recipe, its kiln.lock the packages)")
    .addOption(new Option("--cache-dir <dir>", "Kiln cache whose apt package cache (apt/) the rebuild shares; layers are built in a scratch cache (env KILN_CACHE_DIR)").default(DEFAULT_CACHE))
    .option("--keep <dir>", "keep the rebuilt out dir here (default: removed with the scratch cache)")
    .option("--json", "print the report as JSON (the build's progress goes to stderr)", false)
    .option("-v, --verbose", "print every stage's full log (to stderr)", false)
    .addHelpText("after", "\nExit status: 0 every artifact is bit-identical, 1 one differs (diffoscope's summary is shown when diffoscope is installed), 2 bad input.\n\nExamples:\n  kiln rebuild out\n  kiln rebuild /srv/images/web --keep /var/tmp/web-rebuilt --json")
    .action(async (out: string, o: { cacheDir: string; keep?: string; json: boolean; verbose: boolean }) => {
      const { rebuildCommand } = await import("./commands/rebuild.js");
      setExit(await rebuildCommand(out, o, io));
    });

  program
    .command("plan")
    .description("Show the stages a build would run, their cache keys and what is cached")
    .argument("<recipe>")
    .addOption(cacheOption())
    .option("--json", "print the plan as JSON", false)
    .action(async (recipe: string, o) => {
      const { planCommand } = await import("./commands/plan.js");
      setExit(await planCommand(recipe, o, io));
    });

  program
    .command("verify")
    .description("Boot every flavor of a build under qemu with its root fetched over HTTP")
    .argument("<out>", "a build's out dir")
    .option("--flavor <name...>", "only these flavors")
    .option(
      "--target <name>",
      "only these boots (repeat it or separate with commas): pxe, qcow2-bios, qcow2-uefi, iso-bios, iso-uefi, iso-seeded or iso-seeded:<name>",
      (v: string, prev: string[] | undefined) => [...(prev ?? []), v],
    )
    .option("--timeout <seconds>", "per boot", (v) => Number(v))
    .option("--reverify", "boot even when these very bytes booted before (cached boot results)", false)
    .option("-j, --jobs <n>", "boot vCPUs at once, 2 per guest (default: the cores, at most one per GiB of available memory)")
    .option("--json", "print results as JSON", false)
    .addOption(cacheOption())
    .addHelpText("after", "\nExamples:\n  kiln verify out\n  kiln verify out --flavor generic --target pxe\n  kiln verify out --target qcow2-bios,qcow2-uefi")
    .action(async (out: string, o) => {
      const { verifyCommand } = await import("./commands/verify.js");
      setExit(await verifyCommand(out, { flavor: o.flavor, target: o.target, json: o.json, timeout: o.timeout, cacheDir: o.cacheDir, reverify: o.reverify, jobs: o.jobs }, { signal: io.signal, stdout: io.stdout }));
    });

  const cache = program.command("cache").description("Inspect and prune the layer cache");
  cache
    .command("ls")
    .description("List cached layers and artifacts, most recently used first")
    .addOption(cacheOption())
    .option("--json", "", false)
    .action(async (o) => {
      const { cacheLsCommand } = await import("./commands/cache.js");
      setExit(await cacheLsCommand(o, io));
    });
  cache
    .command("prune")
    .description("Remove least recently used entries until the cache fits --max-size")
    .addOption(cacheOption())
    .option("--max-size <size>", "e.g. 20G; 0 empties the cache", "20G")
    .option("--json", "", false)
    .action(async (o) => {
      const { cachePruneCommand } = await import("./commands/cache.js");
      setExit(await cachePruneCommand(o, io));
    });

  const recipe = program.command("recipe").description("Recipe format tools");
  recipe
    .command("schema")
    .description("Print the recipe JSON Schema (for editors)")
    .action(async () => {
      const { recipeJsonSchema } = await import("../recipe/json-schema.js");
      io.stdout.write(JSON.stringify(recipeJsonSchema(), null, 2) + "\n");
    });
  recipe
    .command("check")
    .description("Validate a recipe and its referenced files")
    .argument("<recipe>")
    .action(async (file: string) => {
      const { loadRecipe } = await import("../recipe/load.js");
      const l = await loadRecipe(file);
      io.stdout.write(`${l.file}: ok (${l.recipe.name})\n`);
    });

  program
    .command("stages")
    .description("List the stage kinds Kiln has")
    .option("--json", "", false)
    .action(async (o) => {
      const { STAGES } = await import("../stages/index.js");
      const rows = STAGES.map((s) => ({ kind: s.kind, type: s.section === "layers" ? "layer" : "artifact", summary: s.summary, tools: s.tools }));
      if (o.json) io.stdout.write(JSON.stringify(rows, null, 2) + "\n");
      else for (const r of rows) io.stdout.write(`${r.kind.padEnd(16)} ${r.type.padEnd(9)} ${r.summary}\n`);
    });

  program
    .command("attest")
    .description("Check a build's attestations (docs/attest.md)")
    .command("verify")
    .description("Check SHA256SUMS's signature (gpgv), every checksum, and that provenance.json names this build's recipe: of an out dir, or of an image of the service (its artifacts downloaded to a temporary folder)")
    .argument("<out|image-id>", "a build's out dir, or the id of an image of the service at --url")
    .option("--keyring <file>", "the signer's public keyring (binary or armored); without it gpgv uses its default keyring")
    .option("--url <url>", "Kiln service URL for an image id [env KILN_URL], e.g. http://127.0.0.1:8080")
    .option("--token <token>", "bearer token [env KILN_TOKEN]")
    .option("--json", "print the findings as JSON", false)
    .addHelpText("after", "\nExit codes: 0 all good, 1 a check failed (each failure is named), 2 bad command line, no out dir or no such image\n\nExamples:\n  kiln attest verify out --keyring ops-key.gpg\n  kiln attest verify /srv/images/web --json\n  kiln attest verify 3f1c2a9e-7b1d-4c55-9e0a-2d4b8c6f1a70 --keyring service-key.gpg --url http://kiln:8080")
    .action(async (target: string, o) => {
      const { attestVerifyCommand } = await import("./commands/attest.js");
      setExit(await attestVerifyCommand(target, { keyring: o.keyring, json: o.json, url: o.url, token: o.token }, io));
    });

  registerStreamsCommands(program, io, setExit);
  registerServiceCommands(program, io, setExit);
  registerIsoCommands(program, io, setExit);
  registerDiffCommand(program, io, setExit);
  return program;
}

async function main(): Promise<void> {
  const controller = new AbortController();
  let exitCode = 0;
  let signals = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    signals++;
    const code = sig === "SIGINT" ? 130 : 143;
    if (signals > 1) {
      // Second signal: stop now; the next kiln run sweeps what is left (host/sweep.ts).
      killAllChildren();
      process.exit(code);
    }
    process.stderr.write(`\nkiln: ${sig}: stopping, releasing mounts and processes (again to force)\n`);
    exitCode = code;
    controller.abort(sig);
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  process.on("exit", killAllChildren);
  // `kiln … | head`: the reader has gone. Stop quietly with the code so far, as a shell tool does
  // on SIGPIPE, instead of crashing on an unhandled EPIPE.
  process.stdout.on("error", (e: NodeJS.ErrnoException) => {
    if (e.code !== "EPIPE") throw e;
    killAllChildren();
    process.exit(exitCode);
  });

  const io: CommandIo = { stdout: process.stdout, stderr: process.stderr, signal: controller.signal };
  const program = buildProgram(io, (c) => (exitCode = signals > 0 ? exitCode : c));
  try {
    await program.parseAsync(process.argv);
  } catch (e) {
    exitCode = signals > 0 ? exitCode : reportError(e, io);
  }
  process.exitCode = exitCode;
}

function reportError(e: unknown, io: CommandIo): number {
  if (e instanceof CommanderError) {
    return e.exitCode === 0 ? 0 : 2; // commander printed its message already
  }
  if (isKilnError(e)) {
    io.stderr.write(`kiln: error: ${e.message}\n`);
    if (e.hint) io.stderr.write(`kiln: hint: ${e.hint}\n`);
    return e.exitCode;
  }
  io.stderr.write(`kiln: internal error (a bug in Kiln ${KILN_VERSION}; please report it with this output):\n`);
  io.stderr.write(`${(e as Error)?.stack ?? String(e)}\nnode ${process.version}\n`);
  return 70;
}

await main();
