/**
 * OpenPGP for streams, with GnuPG from Debian (gpg, gpgv). Why GnuPG and not a JavaScript
 * OpenPGP library: the consumers verify with gpgv (MAAS `gpgv --keyring`, simplestreams
 * `policy_read_signed`), maas-images signs with gpg, and clearsigned text has encoding rules
 * (dash-escaping, trailing whitespace, line endings) where byte-for-byte agreement with the
 * verifier matters more than anything a library could add. GnuPG is in every Debian archive and
 * already on every host that has apt.
 *
 * A key given as a file (an exported secret key, armored or binary) is imported into a throwaway
 * GNUPGHOME that is removed, with its agent, when the signer closes: the user's keyring is never
 * touched. Anything else names a key in the user's own keyring (GNUPGHOME or ~/.gnupg).
 */
import { lstat, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { KilnError } from "../errors.js";
import { capture, exec, type LogSink } from "../host/exec.js";
import { isProcessAlive } from "../host/process-alive.js";

export interface SignerOptions {
  /** File holding the key's passphrase, for a protected key. */
  passphraseFile?: string;
  log?: LogSink;
}

export interface Signer {
  /** Fingerprint of the signing key. */
  readonly fingerprint: string;
  /** `gpg --clearsign`: the `.sjson` form. */
  clearsign(text: string): Promise<string>;
  /** `gpg --armor --detach-sign`: the `.json.gpg` form (as maas-images writes it). */
  detachSign(text: string): Promise<string>;
  /** The public key, binary (`gpg --export`): what a MAAS boot source's keyring_filename wants. */
  exportPublicKey(file: string): Promise<void>;
  close(): Promise<void>;
}

export async function openSigner(key: string, opts: SignerOptions = {}): Promise<Signer> {
  const isFile = (await lstat(key).catch(() => undefined))?.isFile() ?? false;
  let home: string | undefined;
  const base = () => (home ? ["gpg", "--homedir", home] : ["gpg"]);
  let fingerprint: string;
  try {
    if (isFile) {
      await sweepDeadHomes();
      home = await mkdtemp(path.join(os.tmpdir(), "kiln-gpg-"));
      await writeFile(path.join(home, OWNER_FILE), `${process.pid}\n`);
      await exec([...base(), "--batch", "--import", path.resolve(key)], { log: opts.log });
      fingerprint = await secretFingerprint(base(), undefined, key);
    } else {
      fingerprint = await secretFingerprint(base(), key, key);
    }
  } catch (e) {
    if (home) await closeHome(home);
    throw e;
  }
  const signArgs = [
    "--batch", "--yes", "--local-user", fingerprint, "--digest-algo", "SHA512",
    ...(opts.passphraseFile ? ["--pinentry-mode", "loopback", "--passphrase-file", path.resolve(opts.passphraseFile)] : []),
  ];
  const sign = async (mode: string[], text: string) => {
    try {
      return (await exec([...base(), ...signArgs, ...mode], { input: text, captureStdout: true, quietStdout: true, log: opts.log })).stdout;
    } catch (e) {
      throw new KilnError("INPUT_INVALID", `--sign-key ${key}: gpg could not sign (${(e as Error).message})`, {
        hint: opts.passphraseFile ? undefined : "a key with a passphrase needs --passphrase-file",
      });
    }
  };
  return {
    fingerprint,
    clearsign: (text) => sign(["--clearsign"], text),
    detachSign: (text) => sign(["--armor", "--detach-sign"], text),
    exportPublicKey: async (file) => {
      await exec([...base(), "--batch", "--yes", "--output", path.resolve(file), "--export", fingerprint], { log: opts.log });
    },
    close: async () => {
      if (home) await closeHome(home);
    },
  };
}

async function secretFingerprint(gpg: string[], id: string | undefined, label: string): Promise<string> {
  const out = await capture([...gpg, "--batch", "--with-colons", "--list-secret-keys", ...(id ? [id] : [])], { okCodes: [0, 2] });
  // The first "fpr" after a "sec" line is the primary key's fingerprint.
  const lines = out.split("\n");
  const sec = lines.findIndex((l) => l.startsWith("sec:"));
  const fpr = sec >= 0 ? lines.slice(sec + 1).find((l) => l.startsWith("fpr:"))?.split(":")[9] : undefined;
  if (!fpr) {
    throw new KilnError("INPUT_INVALID", `--sign-key ${label}: no secret key ${id ? "by that name in your GnuPG keyring" : "in that file"}`, {
      hint: "give a file made with `gpg --export-secret-keys --armor KEYID`, or a key id from `gpg --list-secret-keys`",
    });
  }
  return fpr;
}

/** In each throwaway GnuPG home: the pid of the Kiln process that made it. */
const OWNER_FILE = "kiln-owner";

/**
 * Stops the agents and removes the homes of Kiln processes that died without closing their
 * signer (a `kiln serve` killed with SIGKILL leaves its gpg-agent running, detached): the next
 * signer opened on the machine sweeps them. A home with no owner file is left alone.
 */
export async function sweepDeadHomes(tmp = os.tmpdir()): Promise<number> {
  let swept = 0;
  for (const name of await readdir(tmp).catch(() => [] as string[])) {
    if (!name.startsWith("kiln-gpg-")) continue;
    const home = path.join(tmp, name);
    const pid = Number((await readFile(path.join(home, OWNER_FILE), "utf8").catch(() => "")).trim());
    if (!Number.isInteger(pid) || pid <= 0 || isProcessAlive(pid)) continue;
    await closeHome(home);
    swept++;
  }
  return swept;
}

async function closeHome(home: string): Promise<void> {
  // gpg started an agent for this home; it outlives gpg (it detaches), so stop it by name of its home.
  await exec(["gpgconf", "--homedir", home, "--kill", "all"], { okCodes: [0, 1, 2] }).catch(() => {});
  await rm(home, { recursive: true, force: true });
}

/** Verifies signatures with gpgv against one keyring file (binary or armored), as MAAS does. */
export interface Verifier {
  /** A clearsigned file's text: ok, or gpgv's complaint. */
  verifyClearsigned(text: string): Promise<{ ok: boolean; why: string }>;
  verifyDetached(signature: string, data: string): Promise<{ ok: boolean; why: string }>;
  close(): Promise<void>;
}

export async function openVerifier(keyring: string): Promise<Verifier> {
  const home = await mkdtemp(path.join(os.tmpdir(), "kiln-gpgv-"));
  try {
    const bytes = await readFile(keyring).catch((e: NodeJS.ErrnoException) => {
      throw new KilnError("USAGE", `--keyring ${keyring}: cannot read it (${e.code ?? e.message})`);
    });
    let ring = path.resolve(keyring);
    if (bytes.subarray(0, 64).toString("latin1").includes("-----BEGIN PGP")) {
      // gpgv reads binary keyrings only; apt dearmors .asc keys the same way.
      ring = path.join(home, "keyring.gpg");
      await exec(["gpg", "--homedir", home, "--batch", "--yes", "--output", ring, "--dearmor", path.resolve(keyring)]);
    }
    let n = 0;
    const gpgv = async (files: Array<[string, string]>) => {
      const paths: string[] = [];
      for (const [name, content] of files) {
        const p = path.join(home, `${n++}-${name}`);
        await writeFile(p, content);
        paths.push(p);
      }
      const r = await exec(["gpgv", "--homedir", home, "--keyring", ring, ...paths], { okCodes: [0, 1, 2], captureStdout: true, quietStdout: true, log: undefined }).catch((e: Error) => ({ code: 2, stdout: e.message }));
      await Promise.all(paths.map((p) => rm(p, { force: true })));
      return r.code;
    };
    return {
      verifyClearsigned: async (text) => {
        const code = await gpgv([["file.sjson", text]]);
        return { ok: code === 0, why: code === 0 ? "" : "gpgv: bad or unknown signature" };
      },
      verifyDetached: async (signature, data) => {
        const code = await gpgv([["file.json.gpg", signature], ["file.json", data]]);
        return { ok: code === 0, why: code === 0 ? "" : "gpgv: bad or unknown signature" };
      },
      close: () => rm(home, { recursive: true, force: true }),
    };
  } catch (e) {
    await rm(home, { recursive: true, force: true });
    throw e;
  }
}

/**
 * The JSON inside a clearsigned file, cut the way MAAS master does: from the first `{` to
 * `-----BEGIN PGP SIGNATURE-----`, without undoing dash-escaping (so a line starting with "-"
 * would break it; indented JSON has none).
 */
export function clearsignedJson(text: string): string {
  const start = text.indexOf("{");
  const end = text.indexOf("-----BEGIN PGP SIGNATURE-----");
  if (start < 0 || end < 0 || end < start) return "";
  return text.slice(start, end);
}
