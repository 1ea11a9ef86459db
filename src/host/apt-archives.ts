/**
 * The apt archive cache shared by builds (`<cache>/apt/archives`), and how a chroot session uses
 * it while other builds use it too.
 *
 * apt-get locks its archives dir (fcntl on `<dir>/lock`, no waiting: "Could not get lock
 * /var/cache/apt/archives/lock") for the whole of an install, upgrade or remove: the download and
 * the dpkg run with every postinst and DKMS build (apt-private/private-install.cc: the pkgAcquire
 * holding it lives through DoInstall). `DPkg::Lock::Timeout` covers only dpkg's own lock, and
 * `Debug::NoLocking` drops the dpkg lock too. So one shared dir bound into two chroots fails the
 * second build whenever two apt runs overlap.
 *
 * Instead each session gets its own archives dir in the build's work dir, filled with hard links
 * to the shared .debs (no copying, same filesystem) and bound at /var/cache/apt/archives. apt's
 * lock is then per session whatever runs apt (Kiln's stages, a recipe's script, Ansible's apt
 * module), and an `apt-get clean` in a script empties only the session's dir. The .debs a session
 * fetched are linked into the shared dir when it ends.
 *
 * Downloads are serialized between builds: `fetch` runs an `apt-get --download-only` holding
 * `<cache>/apt/archives.lock` (flock), links in first what other builds fetched meanwhile and
 * publishes its own before letting go, so builds needing the same packages fetch them once. The
 * lock sits beside the dir, not in it: a tool that re-creates the files it copies into the dir
 * (mmdebstrap's sync-out) would replace it, and a lock file must keep its inode.
 */
import { chmod, constants, copyFile, link, mkdir, mkdtemp, readdir, rm } from "node:fs/promises";
import path from "node:path";
import type { LogSink } from "./exec.js";
import { lockFile } from "./file-lock.js";
import type { Releasable } from "./scope.js";
import { removeTree } from "./workdir.js";

export interface SessionArchives extends Releasable {
  /** The session's own archives dir, to bind at the chroot's /var/cache/apt/archives. */
  readonly path: string;
  /**
   * Runs `download` (an apt-get that only downloads into `path`) holding the shared cache's
   * download lock: .debs other builds published are linked in first, and what it fetched is
   * published before the lock is released.
   */
  fetch<T>(download: () => Promise<T>): Promise<T>;
}

export interface SessionArchivesOptions {
  log: LogSink;
  signal?: AbortSignal;
  /** The build's work dir; the session's dir is made inside it (and swept with it). */
  workDir: string;
}

/** How an apt-get command line uses the archives dir. */
export type AptArchivesUse =
  /** Touches no .deb: update, remove, clean, a simulation. */
  | "none"
  /** Only downloads (-d, --download-only). */
  | "download"
  /** Downloads, then runs dpkg: install, upgrade … */
  | "install";

/** apt-get commands that fetch packages into the archives dir before running dpkg. */
const FETCHING = new Set(["install", "reinstall", "upgrade", "dist-upgrade", "full-upgrade", "build-dep", "satisfy"]);
/** apt-get options whose value is the next word (`-o X=Y`, `-t bookworm-backports`). */
const TAKES_VALUE = new Set(["-o", "--option", "-c", "--config-file", "-t", "--target-release", "--default-release", "-a", "--host-architecture", "-P", "--build-profiles"]);
const DOWNLOAD_ONLY = new Set(["-d", "--download-only"]);
const NO_DOWNLOAD = new Set(["-s", "--simulate", "--just-print", "--dry-run", "--recon", "--no-act", "--print-uris", "--no-download"]);

/** Reads an apt-get argument list (options and command, as given to `ChrootSession.apt`). */
export function aptArchivesUse(args: readonly string[]): AptArchivesUse {
  let command: string | undefined;
  let downloadOnly = false;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === "--") {
      command ??= args[i + 1];
      break;
    }
    if (!a.startsWith("-")) {
      command ??= a;
      continue;
    }
    if (TAKES_VALUE.has(a)) {
      i++;
      continue;
    }
    const name = a.replace(/=.*$/, "");
    if (DOWNLOAD_ONLY.has(name)) downloadOnly = true;
    else if (NO_DOWNLOAD.has(name)) return "none";
    else if (/^-[a-zA-Z]{2,}$/.test(a)) {
      // A cluster of short flags (-yd, -qq); a value-taking letter last takes the next word.
      if (a.includes("s")) return "none";
      if (a.includes("d")) downloadOnly = true;
      if (TAKES_VALUE.has(`-${a.at(-1)}`)) i++;
    }
  }
  if (command === undefined || !FETCHING.has(command)) return "none";
  return downloadOnly ? "download" : "install";
}

/** The download lock of a shared archives dir: `<dir>.lock`, beside it. */
export function downloadLockPath(sharedArchives: string): string {
  const dir = path.resolve(sharedArchives);
  return path.join(path.dirname(dir), `${path.basename(dir)}.lock`);
}

/** Opens a session's own archives dir over the shared one (see the file comment). */
export async function openSessionArchives(shared: string, opts: SessionArchivesOptions): Promise<SessionArchives> {
  await mkdir(shared, { recursive: true });
  const parent = path.join(opts.workDir, "apt");
  await mkdir(parent, { recursive: true });
  const dir = await mkdtemp(path.join(parent, "archives-"));
  await chmod(dir, 0o755); // apt's _apt sandbox user must reach partial/ inside it
  const linked = new Set<string>(); // .debs that came from the shared dir
  let copying = false;

  const linkIn = async (): Promise<void> => {
    const names = (await debsIn(shared)).filter((n) => !linked.has(n));
    await eachLimited(names, async (name) => {
      const how = await placeFile(path.join(shared, name), path.join(dir, name));
      if (how === "missing") return; // removed meanwhile
      linked.add(name);
      if (how === "copied" && !copying) {
        copying = true;
        opts.log.line(`apt archive cache ${shared} is on another filesystem than ${opts.workDir}: copying its .debs instead of linking them`);
      }
    });
  };

  const publish = async (): Promise<void> => {
    const fresh = (await debsIn(dir)).filter((n) => !linked.has(n));
    let kept = 0;
    await eachLimited(fresh, async (name) => {
      if ((await placeFile(path.join(dir, name), path.join(shared, name))) !== "exists") kept++;
      linked.add(name);
    });
    if (kept > 0) opts.log.line(`apt archive cache: kept ${kept} new .deb${kept === 1 ? "" : "s"}`);
  };

  await linkIn();
  const lockPath = downloadLockPath(shared);
  let released = false;
  return {
    path: dir,
    async fetch(download) {
      const t0 = Date.now();
      const lock = await lockFile(lockPath, {
        signal: opts.signal,
        workDir: opts.workDir,
        onWait: () => opts.log.line(`waiting for another build's apt download (lock held: ${lockPath})`),
      });
      try {
        const waited = (Date.now() - t0) / 1000;
        if (waited >= 1) opts.log.line(`got the apt download lock after ${waited.toFixed(1)} s`);
        await linkIn();
        const result = await download();
        await publish();
        return result;
      } finally {
        await lock.release();
      }
    },
    async release() {
      if (released) return;
      released = true;
      await publish(); // what a script's or Ansible's own apt fetched
      await removeTree(dir, opts.log);
    },
  };
}

/** Names of the .deb files directly in `dir` (not partial/, not the lock). */
async function debsIn(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isFile() && e.name.endsWith(".deb")).map((e) => e.name);
}

/**
 * Puts `from` at `to` unless something is there: a hard link, or across filesystems a copy
 * renamed into place (so no reader ever sees half a .deb). "missing": `from` is gone.
 */
async function placeFile(from: string, to: string): Promise<"linked" | "copied" | "exists" | "missing"> {
  try {
    await link(from, to);
    return "linked";
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "EEXIST") return "exists";
    if (code === "ENOENT") return "missing";
    if (code !== "EXDEV") throw e;
  }
  // Not .deb, so neither apt nor another session's linkIn takes it for a package.
  const tmp = path.join(path.dirname(to), `.${path.basename(to)}.${process.pid}.part`);
  try {
    await copyFile(from, tmp, constants.COPYFILE_FICLONE);
    await link(tmp, to);
    return "copied";
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "EEXIST") return "exists";
    if (code === "ENOENT") return "missing";
    throw e;
  } finally {
    await rm(tmp, { force: true });
  }
}

/** Runs `fn` over `items`, at most 32 at a time (a cache holds thousands of .debs). */
async function eachLimited<T>(items: readonly T[], fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(32, items.length) }, worker));
}
