/** `kiln build RECIPE`: plan, build (reusing the cache), assemble out/, boot-verify if asked. */
import { build } from "../../engine/build.js";
import { KilnError } from "../../errors.js";
import { openSigner } from "../../streams/sign.js";
import { createRenderer } from "../render.js";
import type { CommandIo } from "../io.js";

export interface BuildFlags {
  out: string;
  cacheDir: string;
  cache: boolean;
  from?: string;
  verify?: boolean;
  reverify?: boolean;
  /** --jobs as typed. */
  jobs?: string;
  signKey?: string;
  passphraseFile?: string;
  /** --lock FILE: a kiln.lock to build from. */
  lock?: string;
  json: boolean;
  verbose: boolean;
}

export async function buildCommand(recipe: string, f: BuildFlags, io: CommandIo): Promise<number> {
  const jobs = parseJobs(f.jobs);
  // A key gpg cannot sign with (unknown, or a passphrase missing) fails now, not after the build.
  if (f.signKey) {
    const signer = await openSigner(f.signKey, { passphraseFile: f.passphraseFile });
    try {
      await signer.detachSign("kiln: can this key sign?\n");
    } finally {
      await signer.close();
    }
  }
  const r = createRenderer({ json: f.json, verbose: f.verbose, stream: io.stdout });
  try {
    const result = await build({
      recipeFile: recipe,
      outDir: f.out,
      cacheDir: f.cacheDir,
      noCache: !f.cache,
      from: f.from,
      verify: f.verify,
      reverify: f.reverify,
      jobs,
      signKey: f.signKey,
      passphraseFile: f.passphraseFile,
      ...(f.lock !== undefined ? { lockFile: f.lock } : {}),
      signal: io.signal,
      emit: r.emit,
    });
    return result.verify.every((v) => v.ok) ? 0 : 1;
  } finally {
    r.stop();
  }
}

/** --jobs N: a whole number ≥ 1; undefined (not given) lets the engine derive it from the host. */
export function parseJobs(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^[1-9][0-9]{0,3}$/.test(value.trim())) {
    throw new KilnError("USAGE", `--jobs ${JSON.stringify(value)}: give how many stages may run at once, a whole number from 1, e.g. --jobs 2`, {
      hint: "leave it out to use one per core (at most one per GiB of available memory)",
    });
  }
  return Number(value.trim());
}
