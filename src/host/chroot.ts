/**
 * A chroot session over a mounted root: the API filesystems a package manager needs, the host's
 * DNS for the duration, no daemons starting, the shared apt archive cache, and on release
 * everything put back exactly as the image had it. (docs/architecture.md#chroot-steps says why each is needed.)
 *
 * /dev is a fresh tmpfs with the handful of nodes dpkg scripts use and a private devpts instance,
 * not a bind of the host's /dev: nothing in the chroot can reach the host's disks.
 *
 * /var/cache/apt/archives is the session's own dir over the shared cache, never the shared dir
 * itself: apt locks that dir for a whole install, so concurrent builds would fail on
 * "Could not get lock /var/cache/apt/archives/lock" (apt-archives.ts).
 */
import { lstat, readFile, readlink, rm, symlink, unlink, writeFile, chmod, readdir } from "node:fs/promises";
import path from "node:path";
import { aptArchivesUse, openSessionArchives, type SessionArchives } from "./apt-archives.js";
import { exec, type ExecOptions, type ExecResult, type LogSink } from "./exec.js";
import { mountBind, mountFs, mountTmpfs, type Mount } from "./mount.js";
import { resolveInRoot } from "./root-path.js";
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

const CHROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

const APT_OPTIONS = [
  "-y",
  "-o", "Dpkg::Options::=--force-confdef",
  "-o", "Dpkg::Options::=--force-confold",
  "-o", "Dpkg::Options::=--force-unsafe-io", // the layer is thrown away if the build dies anyway
  "-o", "APT::Install-Recommends=false",
  "-o", "Acquire::Retries=3",
];

const DEV_NODES: Array<[string, string, number, number]> = [
  ["null", "c", 1, 3], ["zero", "c", 1, 5], ["full", "c", 1, 7],
  ["random", "c", 1, 8], ["urandom", "c", 1, 9], ["tty", "c", 5, 0],
];

export async function openChroot(root: string, opts: ChrootOptions): Promise<ChrootSession> {
  const scope = new Scope();
  const host = { log: opts.log, workDir: opts.workDir };
  let opened: SessionArchives | undefined;
  try {
    scope.use(await mountFs("proc", "proc", path.join(root, "proc"), ["nosuid,nodev,noexec"], host));
    scope.use(await mountFs("sysfs", "sysfs", path.join(root, "sys"), ["ro,nosuid,nodev,noexec"], host));
    const dev = scope.use(await mountTmpfs(path.join(root, "dev"), { ...host, mode: "0755", size: "16m" }));
    for (const [name, type, major, minor] of DEV_NODES) {
      await exec(["mknod", "-m", "0666", path.join(dev.path, name), type, String(major), String(minor)], { log: opts.log });
    }
    await symlink("/proc/self/fd", path.join(dev.path, "fd"));
    await symlink("pts/ptmx", path.join(dev.path, "ptmx"));
    scope.use(await mountFs("devpts", "devpts", path.join(dev.path, "pts"), ["newinstance,ptmxmode=0666,mode=0620"], host));
    scope.use(await mountTmpfs(path.join(dev.path, "shm"), { ...host, mode: "1777" }));
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
    scope.defer(() => emptyAptLists(root));
  } catch (e) {
    await scope.release();
    throw e;
  }

  const archives = opened;
  const run: ChrootSession["run"] = (argv, o = {}) =>
    exec(["chroot", root, ...argv], {
      ...o,
      env: {
        PATH: CHROOT_PATH,
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
    });

  return {
    root,
    run,
    async apt(args, o = {}) {
      const argv = ["apt-get", ...APT_OPTIONS, ...args];
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

/** mmdebstrap leaves /var/lib/apt/lists empty; each stage keeps it so (a layer has no indexes). */
export async function emptyAptLists(root: string): Promise<void> {
  const lists = await resolveInRoot(root, "/var/lib/apt/lists");
  let entries: string[];
  try {
    entries = await readdir(lists);
  } catch {
    return;
  }
  for (const e of entries) {
    if (e === "partial" || e === "lock") continue;
    await rm(path.join(lists, e), { recursive: true, force: true });
  }
}

export type { Mount };
