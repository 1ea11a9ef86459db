/**
 * A chroot session over a mounted root: the API filesystems a package manager needs, the host's
 * DNS for the duration, no daemons starting, the shared apt archive cache, and on release
 * everything put back exactly as the image had it. (docs/architecture.md#chroot-steps says why each is needed.)
 *
 * Every command runs in a jail (host/jail.ts), not a bare chroot: a recipe's scripts and every
 * package's maintainer scripts are untrusted, and root in a chroot reaches the host in a line
 * (/proc/1/root, chroot() and "..", mknod of a disk). The jail has its own mount, PID, IPC and
 * UTS namespaces with the root pivoted, not chrooted, and keeps only the capabilities apt and
 * dpkg need. It shares the host's network, which apt needs (docs/architecture.md#chroot-steps).
 *
 * The jail's /dev is a fresh tmpfs with the handful of nodes dpkg scripts use and a private devpts
 * instance, not a bind of the host's /dev: nothing in it can reach the host's disks.
 *
 * /var/cache/apt/archives is the session's own dir over the shared cache, never the shared dir
 * itself: apt locks that dir for a whole install, so concurrent builds would fail on
 * "Could not get lock /var/cache/apt/archives/lock" (apt-archives.ts).
 */
import { chmod, cp, lstat, mkdir, readdir, readFile, readlink, rename, rm, symlink, unlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { aptArchivesUse, openSessionArchives, type SessionArchives } from "./apt-archives.js";
import { exec, type ExecOptions, type ExecResult, type LogSink } from "./exec.js";
import { openJail, type Jail } from "./jail.js";
import { mountBind, mountTmpfs, type Mount } from "./mount.js";
import { mkdirInRoot, resolveInRoot } from "./root-path.js";
import { Scope, type Releasable } from "./scope.js";

export interface ChrootOptions {
  log: LogSink;
  signal?: AbortSignal;
  workDir: string;
  /**
   * The apt archive cache shared between builds. The session binds its own dir, hard-linked from
   * it, at /var/cache/apt/archives, and links back the .debs it fetched (apt-archives.ts).
   */
  aptArchives?: string;
  /** Extra environment for every command (proxies). Never written into the image. */
  env?: Record<string, string>;
  /**
   * apt indexes (the files of /var/lib/apt/lists) to start from, and a dir to keep the session's
   * own in on release when it ran `apt update`. A layer hands what its `apt update` fetched to its
   * child layers, whose `apt update` then fetches only the release files and the indexes that
   * changed (docs/cache.md#apt-lists). They never stay in the image: the lists dir is emptied on
   * release either way.
   */
  aptLists?: { seed?: string; keep?: string };
  /** apt preferences for the session (a locked build's pins, docs/lock.md), removed when it ends. */
  aptPins?: string;
  /** Called as the session ends with its root's apt lists dir, before the lists are emptied (a lock's source of suites and digests). */
  onAptLists?: (listsDir: string) => Promise<void>;
}

export interface ChrootSession extends Releasable {
  readonly root: string;
  run(argv: string[], opts?: Pick<ExecOptions, "env" | "input" | "captureStdout" | "quietStdout" | "okCodes">): Promise<ExecResult>;
  /**
   * apt-get with the options every Kiln build wants. A command that fetches packages (install,
   * upgrade …) first downloads them holding the shared cache's download lock, waiting for another
   * build's download if need be, then runs dpkg without it.
   */
  apt(args: string[], opts?: { env?: Record<string, string> }): Promise<ExecResult>;
}

/** Where a locked build's apt pins sit while a session runs. */
export const LOCK_PINS = "/etc/apt/preferences.d/kiln-lock.pref";

const CHROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

const APT_OPTIONS = [
  "-y",
  "-o", "Dpkg::Options::=--force-confdef",
  "-o", "Dpkg::Options::=--force-confold",
  "-o", "Dpkg::Options::=--force-unsafe-io", // the layer is thrown away if the build dies anyway
  "-o", "APT::Install-Recommends=false",
  "-o", "Acquire::Retries=3",
  // No Translation-* indexes: nothing a build does reads package descriptions, and mmdebstrap
  // fetches none either, so a chroot starting from the bootstrap's lists would fetch them (6 MB).
  "-o", "Acquire::Languages=none",
];

export async function openChroot(root: string, opts: ChrootOptions): Promise<ChrootSession> {
  const scope = new Scope();
  const host = { log: opts.log, workDir: opts.workDir };
  let opened: SessionArchives | undefined;
  let jail: Jail | undefined;
  let listsFetched = false; // only lists this session's `apt update` fetched are worth keeping
  try {
    // /proc, /sys and /dev are the jail's own (mounted in its namespace, never on the host).
    // Junk written to /run and /tmp during a stage must not end up in the layer.
    scope.use(await mountTmpfs(path.join(root, "run"), { ...host, mode: "0755" }));
    scope.use(await mountTmpfs(path.join(root, "tmp"), { ...host, mode: "1777" }));
    if (opts.aptArchives) {
      opened = scope.use(await openSessionArchives(opts.aptArchives, { log: opts.log, signal: opts.signal, workDir: opts.workDir }));
      const target = await resolveInRoot(root, "/var/cache/apt/archives");
      scope.use(await mountBind(opened.path, target, host));
    }
    scope.use(await swapInFile(root, "/etc/resolv.conf", await hostResolvConf()));
    // No daemon starts during the build (invoke-rc.d asks policy-rc.d; 101 = action forbidden).
    scope.use(await swapInFile(root, "/usr/sbin/policy-rc.d", "#!/bin/sh\nexit 101\n", 0o755));
    if (opts.aptLists?.seed) await copyAptLists(opts.aptLists.seed, await resolveInRoot(root, "/var/lib/apt/lists"));
    const keep = opts.aptLists?.keep;
    scope.defer(async () => {
      const lists = await resolveInRoot(root, "/var/lib/apt/lists");
      await opts.onAptLists?.(lists);
      if (keep && listsFetched) await copyAptLists(lists, keep);
      await emptyAptState(root);
    });
    if (opts.aptPins !== undefined) {
      await mkdirInRoot(root, "/etc/apt/preferences.d");
      scope.use(await swapInFile(root, LOCK_PINS, opts.aptPins));
    }
    // Last, so it sees every mount above (its root is a recursive bind) and goes first on release.
    // The session lends resolv.conf and policy-rc.d itself (above): the jail need not lend them again.
    jail = scope.use(await openJail(root, { log: opts.log, workDir: opts.workDir, network: "host", ownTmp: false, lendFiles: false }));
  } catch (e) {
    await scope.release();
    throw e;
  }

  const archives = opened;
  const jailed = jail!;
  const run: ChrootSession["run"] = (argv, o = {}) =>
    exec(jailed.command(argv, "/"), {
      ...o,
      env: {
        PATH: CHROOT_PATH,
        HOME: "/root",
        LC_ALL: "C.UTF-8",
        DEBIAN_FRONTEND: "noninteractive",
        DEBCONF_NONINTERACTIVE_SEEN: "true",
        // The host's apt config names host files: the image's apt must read its own.
        APT_CONFIG: undefined,
        ...opts.env,
        ...o.env,
      },
      log: opts.log,
      signal: opts.signal,
      workDir: opts.workDir,
      where: "(chroot)",
      shownArgv: argv,
      cleanEnv: true,
    });

  return {
    root,
    run,
    async apt(args, o = {}) {
      const argv = ["apt-get", ...APT_OPTIONS, ...args];
      if (args[0] === "update") listsFetched = true;
      const use = aptArchivesUse(args);
      if (archives && use === "download") return archives.fetch(() => run(argv, o));
      if (archives && use === "install") await archives.fetch(() => run(["apt-get", ...APT_OPTIONS, "--download-only", ...args], o));
      return run(argv, o);
    },
    release: () => scope.release(),
  };
}

/**
 * Puts `content` at `imagePath` for the session and restores what was there (a file, a symlink
 * or nothing) on release. The image's own resolv.conf may be a symlink into /run (resolved):
 * it is replaced, not followed.
 */
async function swapInFile(root: string, imagePath: string, content: string, mode = 0o644): Promise<Releasable> {
  const dir = await resolveInRoot(root, path.dirname(imagePath));
  const target = path.join(dir, path.basename(imagePath));
  let saved: { kind: "none" } | { kind: "link"; to: string } | { kind: "file"; data: Buffer; mode: number };
  try {
    const st = await lstat(target);
    if (st.isSymbolicLink()) saved = { kind: "link", to: await readlink(target) };
    else saved = { kind: "file", data: await readFile(target), mode: st.mode & 0o7777 };
    await unlink(target);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
    saved = { kind: "none" };
  }
  await writeFile(target, content, { mode });
  await chmod(target, mode);
  return {
    async release() {
      await rm(target, { force: true });
      if (saved.kind === "link") await symlink(saved.to, target);
      else if (saved.kind === "file") {
        await writeFile(target, saved.data, { mode: saved.mode });
        await chmod(target, saved.mode);
      }
    },
  };
}

async function hostResolvConf(): Promise<string> {
  try {
    return await readFile("/etc/resolv.conf", "utf8");
  } catch {
    return "";
  }
}

/**
 * mmdebstrap leaves /var/lib/apt/lists empty and /var/cache/apt without apt's binary caches; each
 * session leaves them so (a layer holds no indexes, and pkgcache.bin would carry the build's lists
 * into the image).
 */
export async function emptyAptState(root: string): Promise<void> {
  await emptyAptLists(root);
  const cache = await resolveInRoot(root, "/var/cache/apt");
  for (const n of await readdir(cache).catch(() => [] as string[])) {
    if (n.endsWith(".bin")) await rm(path.join(cache, n), { force: true });
  }
}

/** Empties /var/lib/apt/lists but for apt's own `partial/` and `lock`. */
export async function emptyAptLists(root: string): Promise<void> {
  const lists = await resolveInRoot(root, "/var/lib/apt/lists");
  for (const e of await indexFiles(lists)) await rm(path.join(lists, e), { recursive: true, force: true });
}

/** The entries of an apt lists dir that are indexes: all but `partial/` and `lock`. */
async function indexFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir).catch(() => [] as string[]);
  return entries.filter((e) => e !== "partial" && e !== "lock");
}

/**
 * Copies apt's indexes (regular files only: the image's lists dir is the untrusted side) from one
 * lists dir to another, times kept as apt left them.
 * Nothing to copy, nothing made.
 */
async function copyAptLists(from: string, to: string): Promise<void> {
  const files: string[] = [];
  for (const f of await indexFiles(from)) if ((await lstat(path.join(from, f))).isFile()) files.push(f);
  if (files.length === 0) return;
  await mkdir(to, { recursive: true });
  for (const f of files) {
    await rm(path.join(to, f), { recursive: true, force: true }); // never write through what is there
    await cp(path.join(from, f), path.join(to, f), { preserveTimestamps: true, errorOnExist: true, force: false });
  }
}

/**
 * Moves apt's indexes (regular files only) out of a lists dir into `to`: for a lists dir the
 * stage made itself and empties anyway (bootstrap's), on the same filesystem as `to`.
 */
export async function moveAptLists(from: string, to: string): Promise<void> {
  const files: string[] = [];
  for (const f of await indexFiles(from)) if ((await lstat(path.join(from, f))).isFile()) files.push(f);
  if (files.length === 0) return;
  await mkdir(to, { recursive: true });
  for (const f of files) {
    await rm(path.join(to, f), { recursive: true, force: true });
    await rename(path.join(from, f), path.join(to, f));
  }
}

export type { Mount };
