/**
 * The public keys a session accepts: OpenSSH public key lines (`ssh-ed25519 AAAA… comment`), as
 * IMS stores them in its public-keys records. authorized_keys options (`from=`, `command=`…)
 * are refused rather than ignored: a restriction Kiln would not enforce must not look enforced.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import ssh2 from "ssh2";
import type { ParsedKey } from "ssh2";
import { KilnError, type Problem } from "../errors.js";

export interface AuthorizedKey {
  readonly key: ParsedKey;
  /** The SSH wire form of the public key (what a client offers). */
  readonly blob: Buffer;
  /** `SHA256:…`, as `ssh-keygen -l` prints it. */
  readonly fingerprint: string;
  readonly comment: string;
}

/** Parses key lines; blank lines and `#` comments are skipped. All bad lines are reported at once. */
export function parseAuthorizedKeys(lines: readonly string[]): AuthorizedKey[] {
  const keys: AuthorizedKey[] = [];
  const problems: Problem[] = [];
  lines.forEach((raw, i) => {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) return;
    const where = `authorizedKeys[${i}]`;
    const type = line.split(/\s+/)[0]!;
    if (!/^(ssh-|ecdsa-|sk-)/.test(type)) {
      problems.push({ path: where, message: `"${abbreviate(line)}" does not start with a key type; authorized_keys options (from=, command=, …) are not supported, give the bare key line` });
      return;
    }
    const parsed = ssh2.utils.parseKey(line);
    const key = Array.isArray(parsed) ? (parsed[0] as ParsedKey | undefined) : parsed;
    if (!key || key instanceof Error) {
      problems.push({ path: where, message: `"${abbreviate(line)}" is not an OpenSSH public key${key instanceof Error ? ` (${key.message})` : ""}` });
      return;
    }
    if (key.isPrivateKey()) {
      problems.push({ path: where, message: "is a private key; give the public key line (the .pub file)" });
      return;
    }
    const blob = key.getPublicSSH();
    keys.push({ key, blob, fingerprint: fingerprint(blob), comment: key.comment ?? "" });
  });
  if (problems.length > 0) {
    throw new KilnError("INPUT_INVALID", `${problems.length} unusable public key${problems.length > 1 ? "s" : ""}: ${problems.map((p) => `${p.path}: ${p.message}`).join("; ")}`, { problems });
  }
  return keys;
}

/** The SHA-256 fingerprint of a public key blob, `SHA256:` + unpadded base64 (ssh-keygen -l). */
export function fingerprint(blob: Buffer): string {
  return "SHA256:" + createHash("sha256").update(blob).digest("base64").replace(/=+$/, "");
}

/** The authorized key whose blob is `blob`, compared in constant time. */
export function findAuthorizedKey(keys: readonly AuthorizedKey[], blob: Buffer): AuthorizedKey | undefined {
  return keys.find((k) => k.blob.length === blob.length && timingSafeEqual(k.blob, blob));
}

/**
 * True only when `signature` over `data` verifies with the key: what proves the client holds
 * the private key (a client may offer any public key it has seen).
 */
export function verifySignature(key: AuthorizedKey, data: Buffer, signature: Buffer, hashAlgo: string | undefined): boolean {
  try {
    return key.key.verify(data, signature, hashAlgo) === true;
  } catch {
    return false;
  }
}

function abbreviate(s: string): string {
  return s.length > 40 ? `${s.slice(0, 37)}...` : s;
}
