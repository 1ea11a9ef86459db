/**
 * Reproducible builds (docs/reproducible.md): the build's SOURCE_DATE_EPOCH, the file times of a
 * layer clamped to it, and identifiers (file system UUIDs, GPT GUIDs, FAT volume ids, ISO medium
 * ids) derived from the stage's key and the epoch instead of drawn at random, so two builds of
 * the same recipe on the same archive state give the same bytes.
 */
import { createHash, randomBytes } from "node:crypto";
import { lstat, lutimes, readdir, rm, truncate } from "node:fs/promises";
import path from "node:path";
import type { LogSink } from "../host/exec.js";
import { resolveInRoot } from "../host/root-path.js";

/**
 * The `Date:` of an apt Release/InRelease file in seconds since the epoch (RFC 2822, always UTC
 * in Debian's archive), or undefined when there is none: the time the archive state was published.
 */
export function releaseEpoch(text: string): number | undefined {
  // InRelease is clear-signed: the fields come after the armor header, before the signature.
  const m = /^Date:[ \t]*(.+?)[ \t]*$/m.exec(text);
  if (!m) return undefined;
  const ms = Date.parse(m[1]!);
  return Number.isFinite(ms) && ms >= 0 ? Math.floor(ms / 1000) : undefined;
}

/** Where a stage's identifiers come from: its key and the build's epoch (none in a customize job: random). */
export interface IdSeed {
  key: string;
  epoch: number;
}

/**
 * 16 bytes derived from the seed and what they are for (one purpose per identifier: "root",
 * "esp", "partition:data" …), or random bytes without a seed.
 */
function idBytes(seed: IdSeed | undefined, purpose: string): Buffer {
  if (!seed) return randomBytes(16);
  return createHash("sha256").update(`kiln-id\0${seed.key}\0${seed.epoch}\0${purpose}`).digest().subarray(0, 16);
}

/**
 * A UUID for `purpose`: RFC 9562 version 8 (custom: here the first 122 bits of a sha256 over
 * the stage key, the epoch and the purpose) with a seed, else a random version 4 UUID.
 */
export function derivedUuid(seed: IdSeed | undefined, purpose: string): string {
  const b = idBytes(seed, purpose);
  b[6] = (b[6]! & 0x0f) | (seed ? 0x80 : 0x40);
  b[8] = (b[8]! & 0x3f) | 0x80;
  const h = b.toString("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** `bytes` hex digits' worth of identifier for `purpose` (a FAT volume id: 4 bytes, upper case). */
export function derivedHex(seed: IdSeed | undefined, purpose: string, bytes: number): string {
  return idBytes(seed, purpose).subarray(0, bytes).toString("hex").toUpperCase();
}

/**
 * Clamps the times of everything under `dir` (not following symlinks) to `epoch`: an entry whose
 * mtime is later gets mtime and atime = epoch. Entries made from packages keep their packaged
 * times (they are older); what the build wrote (maintainer scripts, Kiln's files, directories
 * that gained entries) states the epoch. Children first, so setting a child's times cannot
 * touch its directory afterwards. Returns how many entries were clamped.
 */
export async function clampTimes(dir: string, epoch: number): Promise<number> {
  let clamped = 0;
  const visit = async (p: string): Promise<void> => {
    const st = await lstat(p, { bigint: true });
    if (st.isDirectory()) for (const n of await readdir(p)) await visit(path.join(p, n));
    if (st.mtimeNs > BigInt(epoch) * 1_000_000_000n) {
      await lutimes(p, epoch, epoch);
      clamped++;
    }
  };
  await visit(dir);
  return clamped;
}

/**
 * Build-time state that differs from one build to the next although the image is the same, and
 * that the image does not need: removed (caches and backups the OS makes again when it needs
 * them; a machine's own state, generated at first boot).
 */
export const BUILD_STATE_FILES = [
  "/var/cache/ldconfig/aux-cache", // ldconfig's own cache of file times and inodes (ld.so.cache itself is sorted, kept)
  "/var/lib/systemd/random-seed", // a seed every machine would share
  "/var/lib/systemd/credential.secret",
  "/var/lib/dbus/machine-id",
  "/var/log/apt/eipp.log.xz", // apt's solver dump of the last run
  // apt's binary caches and indexes: every chroot session removes them (host/chroot.ts emptyAptState).
] as const;

/** Directories whose build-time contents are removed (not the directories themselves). */
export const BUILD_STATE_DIRS = [
  "/var/cache/fontconfig", // caches of font dir times; fontconfig makes them again when missing
  "/var/cache/man", // man-db's index (a gdbm file with the time of its run); the man-db timer makes it again
] as const;

/** Backups dpkg and debconf keep of their databases from the run before the last: `*-old`. */
const BACKUP_DIRS = ["/var/lib/dpkg", "/var/cache/debconf"] as const;

/**
 * Removes or empties what carries the time or circumstances of the build (docs/reproducible.md):
 * the files above, dpkg/debconf `*-old` backups, and every log under /var/log (dpkg.log, apt's
 * history.log and term.log, alternatives.log, bootstrap.log …), emptied rather than removed so
 * that their owners and modes stay as the packages made them. Paths resolve inside the image.
 */
export async function removeBuildState(root: string, log: LogSink): Promise<void> {
  const at = (p: string) => resolveInRoot(root, p, false);
  const gone: string[] = [];
  const removeFile = async (p: string, shown: string) => {
    const st = await lstat(p).catch(() => undefined);
    if (st && !st.isDirectory()) {
      await rm(p, { force: true });
      gone.push(shown);
    }
  };
  for (const f of BUILD_STATE_FILES) await removeFile(await at(f), f);
  for (const d of BUILD_STATE_DIRS) {
    const dir = await resolveInRoot(root, d, true);
    for (const n of await readdir(dir).catch(() => [] as string[])) {
      await rm(path.join(dir, n), { recursive: true, force: true });
      gone.push(`${d}/${n}`);
    }
  }
  for (const d of BACKUP_DIRS) {
    const dir = await resolveInRoot(root, d, true);
    for (const n of (await readdir(dir).catch(() => [] as string[])).filter((x) => x.endsWith("-old"))) await removeFile(path.join(dir, n), `${d}/${n}`);
  }
  const emptied: string[] = [];
  const emptyLogs = async (dir: string, shown: string): Promise<void> => {
    for (const n of await readdir(dir).catch(() => [] as string[])) {
      const p = path.join(dir, n);
      const st = await lstat(p);
      if (st.isDirectory()) await emptyLogs(p, `${shown}/${n}`);
      else if (st.isFile() && st.size > 0) {
        await truncate(p, 0);
        emptied.push(`${shown}/${n}`);
      }
    }
  };
  await emptyLogs(await resolveInRoot(root, "/var/log", true), "/var/log");
  if (gone.length) log.line(`removed build-time state: ${gone.join(" ")}`);
  if (emptied.length) log.line(`emptied logs: ${emptied.join(" ")}`);
}
