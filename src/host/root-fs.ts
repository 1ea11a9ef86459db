/**
 * File operations confined to an image root, for serving a user's file requests (SFTP) while
 * processes inside the root may be changing it under us.
 *
 * resolveInRoot() alone is not enough there: between resolving `/a/b/file` and opening it, a
 * root shell in the jail can swap `/a` for a symlink to `/`, and the host would follow it onto its
 * own files. So every operation here:
 *   1. resolves the path in the image (resolveInRoot: the image's symlinks, `..` stops at its /);
 *   2. opens the result, or its parent directory, with O_PATH: that opens nothing for I/O and has
 *      no side effects (a device node in an image names a device of the host);
 *   3. checks where that open really landed (`Containment`) and refuses anything outside;
 *   4. works through /proc/self/fd/N from then on, so nothing is looked up by name again, except
 *      the last component inside an already checked directory, which is created, removed or
 *      renamed without following symlinks (O_NOFOLLOW, and unlink/rename/mkdir never follow).
 * Files are opened for reading or writing only when they are regular files.
 */
import { constants, type Stats } from "node:fs";
import { chmod, chown, open, readdir, readFile, readlink, lstat, mkdir, rename, rmdir, symlink, truncate, unlink, utimes, type FileHandle } from "node:fs/promises";
import path from "node:path";
import { resolveInRoot } from "./root-path.js";

/** Linux O_PATH (the same on x86-64 and arm64); node:fs does not export it. */
const O_PATH = 0o10000000;

/**
 * How to tell that an open file is inside the root:
 *  - `mounts`: the file's mount (fdinfo mnt_id) is one of the given mounts. For a jail, whose
 *    mount namespace holds the image and its tmpfs mounts and nothing of the host;
 *  - `path`: the file's path (readlink /proc/self/fd/N) is `dir` or below it. For a plain
 *    directory on the host.
 */
export type Containment = { kind: "mounts"; ids: ReadonlySet<number> } | { kind: "path"; dir: string };

export interface SetAttributes {
  mode?: number;
  uid?: number;
  gid?: number;
  /** Seconds since the epoch. */
  atime?: number;
  mtime?: number;
  size?: number;
}

export interface OpenHow {
  read: boolean;
  write: boolean;
  append?: boolean;
  create?: boolean;
  truncate?: boolean;
  exclusive?: boolean;
}

/** An error with the errno code SFTP and callers map to a status. */
export class RootFsError extends Error {
  constructor(
    readonly code: "ENOENT" | "EACCES" | "EPERM" | "EEXIST" | "ENOTDIR",
    message: string,
  ) {
    super(message);
    this.name = "RootFsError";
  }
}

export class RootFs {
  /**
   * `root`: the host path of the image's `/` (for a jail, /proc/<init>/root: the jail's own view,
   * its /tmp tmpfs included). Paths given to the methods are absolute paths inside the image.
   */
  constructor(
    readonly root: string,
    private readonly containment: Containment,
  ) {}

  /** stat (follow) or lstat of an image path. */
  async stat(imagePath: string, follow = true): Promise<Stats> {
    const fh = await this.pin(await this.resolve(imagePath, follow), follow ? 0 : constants.O_NOFOLLOW);
    try {
      return await fh.stat();
    } finally {
      await fh.close();
    }
  }

  async readlink(imagePath: string): Promise<string> {
    return this.inParent(imagePath, (at) => readlink(at));
  }

  /** The canonical image path: every symlink resolved inside the image, `.` and `..` gone. */
  async realpath(imagePath: string): Promise<string> {
    const host = await this.resolve(imagePath, true);
    return "/" + path.relative(this.root, host);
  }

  /** A regular file, opened for I/O. Symlinks are followed inside the image, as open(2) would. */
  async openFile(imagePath: string, how: OpenHow, mode = 0o644): Promise<FileHandle> {
    let flags = how.read && how.write ? constants.O_RDWR : how.write ? constants.O_WRONLY : constants.O_RDONLY;
    if (how.append) flags |= constants.O_APPEND;
    if (how.truncate) flags |= constants.O_TRUNC;
    const host = await this.resolve(imagePath, true);
    if (!how.create) return this.reopenRegular(await this.pin(host, 0), flags);

    const dir = await this.pin(path.dirname(host), constants.O_DIRECTORY, host);
    try {
      const at = `/proc/self/fd/${dir.fd}/${path.basename(host)}`;
      let existing: FileHandle | undefined;
      try {
        existing = await open(at, O_PATH | constants.O_NOFOLLOW);
      } catch (e) {
        if (errno(e) !== "ENOENT") throw e;
      }
      if (existing && !(await this.isInside(existing.fd))) {
        await existing.close(); // a mount point the jail does not own
        throw outside(imagePath);
      }
      if (existing) {
        if (how.exclusive) {
          await existing.close();
          throw new RootFsError("EEXIST", `${imagePath} exists`);
        }
        return await this.reopenRegular(existing, flags);
      }
      // Created here, atomically: O_EXCL fails rather than open whatever appeared meanwhile.
      return await open(at, flags | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, mode & 0o7777);
    } finally {
      await dir.close();
    }
  }

  /** The entries of a directory with their lstat, without `.` and `..`. */
  async list(imagePath: string): Promise<Array<{ name: string; stats: Stats }>> {
    const dir = await this.pin(await this.resolve(imagePath, true), constants.O_DIRECTORY);
    try {
      const base = `/proc/self/fd/${dir.fd}`;
      const out: Array<{ name: string; stats: Stats }> = [];
      for (const name of await readdir(base)) {
        try {
          out.push({ name, stats: await lstat(`${base}/${name}`) });
        } catch {
          // removed meanwhile
        }
      }
      return out;
    } finally {
      await dir.close();
    }
  }

  async mkdir(imagePath: string, mode = 0o755): Promise<void> {
    await this.inParent(imagePath, (at) => mkdir(at, mode & 0o7777));
  }

  async rmdir(imagePath: string): Promise<void> {
    await this.inParent(imagePath, (at) => rmdir(at));
  }

  async unlink(imagePath: string): Promise<void> {
    await this.inParent(imagePath, (at) => unlink(at));
  }

  /** Creates `linkPath` pointing to `target` (stored as given: the image resolves it). */
  async symlink(target: string, linkPath: string): Promise<void> {
    await this.inParent(linkPath, (at) => symlink(target, at));
  }

  /** Renames; refuses to replace an existing `to` unless `overwrite` (SFTP v3 RENAME does not). */
  async rename(from: string, to: string, overwrite = false): Promise<void> {
    await this.inParent(from, (src) =>
      this.inParent(to, async (dst) => {
        if (!overwrite) {
          const exists = await lstat(dst).then(() => true, () => false);
          if (exists) throw new RootFsError("EEXIST", `${to} exists`);
        }
        await rename(src, dst);
      }),
    );
  }

  /** chmod/chown/utimes/truncate, following symlinks inside the image (SFTP SETSTAT). */
  async setAttributes(imagePath: string, attrs: SetAttributes): Promise<void> {
    const fh = await this.pin(await this.resolve(imagePath, true), 0);
    try {
      const at = `/proc/self/fd/${fh.fd}`;
      if (attrs.size !== undefined) {
        if (!(await fh.stat()).isFile()) throw new RootFsError("EPERM", `${imagePath} is not a regular file`);
        await truncate(at, attrs.size);
      }
      if (attrs.uid !== undefined || attrs.gid !== undefined) {
        const st = await fh.stat();
        await chown(at, attrs.uid ?? st.uid, attrs.gid ?? st.gid);
      }
      if (attrs.mode !== undefined) await chmod(at, attrs.mode & 0o7777);
      if (attrs.atime !== undefined || attrs.mtime !== undefined) {
        const st = await fh.stat();
        await utimes(at, attrs.atime ?? st.atimeMs / 1000, attrs.mtime ?? st.mtimeMs / 1000);
      }
    } finally {
      await fh.close();
    }
  }

  /** The host path an image path names right now (not yet checked: pin() checks). */
  private resolve(imagePath: string, follow: boolean): Promise<string> {
    if (!imagePath.startsWith("/")) throw new RootFsError("ENOENT", `${imagePath}: not an absolute path`);
    return resolveInRoot(this.root, imagePath, follow);
  }

  /**
   * Opens `host` with O_PATH and checks it is inside the root. The root itself is always
   * followed: for a jail it is the /proc/<pid>/root magic link.
   */
  private async pin(host: string, flags: number, forPath = host): Promise<FileHandle> {
    if (host === this.root) flags &= ~constants.O_NOFOLLOW;
    else if (!host.startsWith(this.root + "/")) throw outside(this.imagePathOf(forPath));
    let fh: FileHandle;
    try {
      fh = await open(host, O_PATH | flags);
    } catch (e) {
      if (errno(e) === "ENOENT") throw new RootFsError("ENOENT", `${this.imagePathOf(forPath)}: no such file or directory`);
      if (errno(e) === "ENOTDIR") throw new RootFsError("ENOTDIR", `${this.imagePathOf(forPath)}: not a directory`);
      throw e;
    }
    try {
      if (!(await this.isInside(fh.fd))) throw outside(this.imagePathOf(forPath));
      return fh;
    } catch (e) {
      await fh.close();
      throw e;
    }
  }

  private async isInside(fd: number): Promise<boolean> {
    if (this.containment.kind === "mounts") {
      const info = await readFile(`/proc/self/fdinfo/${fd}`, "utf8");
      const m = /^mnt_id:\s*(\d+)/m.exec(info);
      return m !== null && this.containment.ids.has(Number(m[1]));
    }
    const real = await readlink(`/proc/self/fd/${fd}`);
    const dir = this.containment.dir;
    return real === dir || real.startsWith(dir === "/" ? "/" : dir + "/");
  }

  /** Reopens a checked O_PATH handle for I/O if it is a regular file; closes it either way. */
  private async reopenRegular(pinned: FileHandle, flags: number): Promise<FileHandle> {
    try {
      const st = await pinned.stat();
      if (st.isSymbolicLink()) throw new RootFsError("EACCES", "the file was replaced by a symlink meanwhile");
      if (st.isDirectory()) throw new RootFsError("EPERM", "is a directory");
      if (!st.isFile()) throw new RootFsError("EACCES", "not a regular file (devices, fifos and sockets are not served)");
      return await open(`/proc/self/fd/${pinned.fd}`, flags);
    } finally {
      await pinned.close();
    }
  }

  /** Runs `fn` on `/proc/self/fd/<checked parent>/<name>` (the last component not followed). */
  private async inParent<T>(imagePath: string, fn: (at: string) => Promise<T>): Promise<T> {
    const host = await this.resolve(imagePath, false);
    if (host === this.root) throw new RootFsError("EPERM", `${imagePath}: is the image's root directory`);
    const dir = await this.pin(path.dirname(host), constants.O_DIRECTORY, host);
    try {
      return await fn(`/proc/self/fd/${dir.fd}/${path.basename(host)}`);
    } finally {
      await dir.close();
    }
  }

  private imagePathOf(host: string): string {
    return host === this.root ? "/" : host.startsWith(this.root + "/") ? host.slice(this.root.length) : host;
  }
}

function outside(what: string): RootFsError {
  return new RootFsError("EACCES", `${what}: resolves outside the image`);
}

function errno(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException).code;
}
