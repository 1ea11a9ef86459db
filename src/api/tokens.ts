/**
 * API tokens: bearer secrets with a role, kept as sha256 digests in `<data-dir>/tokens.json`
 * (mode 0600). `kiln token create` appends to the file while `kiln serve` runs; the server
 * notices the change (it checks the file's mtime at most once a second), so no restart and no
 * catalog access from the token command: the embedded catalog admits one process only.
 * Changes read, change and write the file under a lock on `tokens.json.lock` (flock), so two
 * `kiln token create` at once both keep their token.
 *
 * A token is `kiln_` + 43 base64url characters (32 random bytes); only its digest is stored, so
 * a lost token is revoked and replaced, never recovered.
 */
import { createHash, randomBytes } from "node:crypto";
import { mkdir, readFile, rename, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { KilnError } from "../errors.js";
import { lockFile } from "../host/file-lock.js";

export const ROLES = ["admin", "read-only"] as const;
export type Role = (typeof ROLES)[number];

export interface TokenEntry {
  /** Short public id (first 12 hex digits of the digest), for listing and revoking. */
  id: string;
  role: Role;
  name: string;
  sha256: string;
  created: string;
}

interface TokenFile {
  version: 1;
  tokens: TokenEntry[];
}

export function tokensFile(dataDir: string): string {
  return path.join(dataDir, "tokens.json");
}

function digest(token: string): string {
  return createHash("sha256").update(token).digest("hex");
}

async function readTokens(file: string): Promise<TokenEntry[]> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw e;
  }
  try {
    const parsed = JSON.parse(text) as TokenFile;
    return Array.isArray(parsed.tokens) ? parsed.tokens : [];
  } catch {
    throw new KilnError("SERVICE_CONFIG", `${file} is not valid JSON; fix or remove it (tokens in it stop working)`);
  }
}

async function writeTokens(file: string, tokens: TokenEntry[]): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, JSON.stringify({ version: 1, tokens } satisfies TokenFile, null, 2) + "\n", { mode: 0o600 });
  await rename(tmp, file);
}

/** Runs a read-change-write of the tokens file while holding its lock. */
async function changeTokens<T>(file: string, change: (tokens: TokenEntry[]) => { tokens?: TokenEntry[]; result: T }): Promise<T> {
  const lock = await lockFile(`${file}.lock`);
  try {
    const { tokens, result } = change(await readTokens(file));
    if (tokens) await writeTokens(file, tokens);
    return result;
  } finally {
    await lock.release();
  }
}

/** Makes a token, stores its digest and returns it (the only time the secret exists). */
export async function createToken(dataDir: string, role: Role, name = ""): Promise<{ token: string; entry: TokenEntry }> {
  const token = `kiln_${randomBytes(32).toString("base64url")}`;
  const sha256 = digest(token);
  const entry: TokenEntry = { id: sha256.slice(0, 12), role, name, sha256, created: new Date().toISOString() };
  await changeTokens(tokensFile(dataDir), (tokens) => ({ tokens: [...tokens, entry], result: undefined }));
  return { token, entry };
}

export async function listTokens(dataDir: string): Promise<TokenEntry[]> {
  return readTokens(tokensFile(dataDir));
}

/** Removes the token with this id; false when there is none. */
export async function revokeToken(dataDir: string, id: string): Promise<boolean> {
  return changeTokens(tokensFile(dataDir), (tokens) => {
    const kept = tokens.filter((t) => t.id !== id);
    return kept.length === tokens.length ? { result: false } : { tokens: kept, result: true };
  });
}

/** What the server asks: which role does this bearer token have? */
export interface TokenVerifier {
  roleOf(token: string): Promise<Role | undefined>;
}

/** Reads tokens.json, re-reading it when its mtime changes (checked at most once a second). */
export class FileTokenVerifier implements TokenVerifier {
  private byDigest = new Map<string, Role>();
  private mtime = -1;
  private checked = 0;

  constructor(private readonly file: string) {}

  private async refresh(): Promise<void> {
    const now = Date.now();
    if (now - this.checked < 1000) return;
    this.checked = now;
    const m = await stat(this.file).then(
      (s) => s.mtimeMs,
      () => 0,
    );
    if (m === this.mtime) return;
    this.mtime = m;
    const tokens = await readTokens(this.file).catch(() => [] as TokenEntry[]);
    this.byDigest = new Map(tokens.map((t) => [t.sha256, t.role]));
  }

  async roleOf(token: string): Promise<Role | undefined> {
    await this.refresh();
    // Looked up by digest: how long the lookup takes says nothing about the secret.
    return this.byDigest.get(digest(token));
  }
}

/** Fixed tokens, for tests and embedding. */
export class StaticTokenVerifier implements TokenVerifier {
  constructor(private readonly tokens: Record<string, Role>) {}
  async roleOf(token: string): Promise<Role | undefined> {
    return this.tokens[token];
  }
}
