/**
 * The SFTP server side (protocol v3, as OpenSSH's sftp and scp speak it), on ssh2's SFTP stream.
 * Every path is served by a RootFs: resolved inside the image with the image's own symlinks,
 * checked where it really landed, regular files only (see host/root-fs.ts). A path that leads
 * outside is refused with "permission denied" and logged.
 *
 * The view: in a jail the image is `/`, as the jailed shell sees it (its /tmp is the jail's
 * tmpfs, so `scp f host:/tmp/` lands where the shell looks). Not jailed, the shell sees the image
 * at /mnt/image, so SFTP does too: `/` and `/mnt` are read-only directories holding only the way
 * to `/mnt/image`, and nothing else of the host is served.
 */
import type { Stats } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import path from "node:path";
import ssh2 from "ssh2";
import type { Attributes, SFTPWrapper } from "ssh2";
import type { LogSink } from "../host/exec.js";
import type { RootFs } from "../host/root-fs.js";

const { STATUS_CODE, OPEN_MODE } = ssh2.utils.sftp;

export interface SftpView {
  readonly fs: RootFs;
  /** Where the image appears: "/" (jail) or "/mnt/image" (not jailed). */
  readonly mountPoint: string;
  /** Where relative paths start (what REALPATH "." answers): the user's home. */
  readonly home: string;
}

export type Located =
  | { kind: "image"; path: string }
  | { kind: "virtual"; path: string; children: string[] }
  | { kind: "none"; path: string };

/** Where an SFTP path points: into the image, at a directory above the mount point, or nowhere. */
export function locate(view: Pick<SftpView, "mountPoint" | "home">, p: string): Located {
  const abs = p.startsWith("/") ? p : `${view.home}/${p}`;
  // In the image, `..` and symlinks are resolved physically by RootFs (resolveInRoot).
  if (view.mountPoint === "/") return { kind: "image", path: abs };
  const norm = path.posix.normalize(abs).replace(/(.)\/+$/, "$1");
  const mp = view.mountPoint;
  if (norm === mp || norm.startsWith(mp + "/")) return { kind: "image", path: "/" + norm.slice(mp.length + 1) };
  const prefix = norm === "/" ? "/" : norm + "/";
  if (mp.startsWith(prefix)) return { kind: "virtual", path: norm, children: [mp.slice(prefix.length).split("/")[0]!] };
  return { kind: "none", path: norm };
}

type Handle = { kind: "file"; fh: FileHandle; path: string } | { kind: "dir"; entries: Entry[] };
interface Entry {
  filename: string;
  longname: string;
  attrs: Attributes;
}

const MAX_READ = 64 * 1024; // a short read is fine: clients ask again for the rest
const DIR_BATCH = 128;

export function serveSftp(sftp: SFTPWrapper, view: SftpView, log: LogSink): void {
  const handles = new Map<number, Handle>();
  let nextHandle = 1;
  const fs = view.fs;

  const newHandle = (h: Handle): Buffer => {
    const id = nextHandle++;
    handles.set(id, h);
    const buf = Buffer.alloc(4);
    buf.writeUInt32BE(id);
    return buf;
  };
  const handleOf = (b: Buffer): Handle | undefined => (b.length === 4 ? handles.get(b.readUInt32BE()) : undefined);
  const dropHandle = (b: Buffer) => handles.delete(b.readUInt32BE());

  /** Runs a request; any error becomes its status (and a log line unless it is a plain "not found"). */
  const serve = (reqid: number, what: string, fn: () => Promise<void>) => {
    fn().catch((e: NodeJS.ErrnoException) => {
      const [code, message] = statusOf(e);
      if (code !== STATUS_CODE.NO_SUCH_FILE) log.line(`sftp: ${what}: ${e.message}`);
      sftp.status(reqid, code, message);
    });
  };
  const image = (p: string): string => {
    const at = locate(view, p);
    if (at.kind === "image") return at.path;
    throw Object.assign(new Error(`${p}: ${at.kind === "virtual" ? "read-only directory" : "not served (outside the image)"}`), {
      code: at.kind === "virtual" ? "EPERM" : "ENOENT",
    });
  };
  const shown = (imagePath: string) => (view.mountPoint === "/" ? imagePath : imagePath === "/" ? view.mountPoint : view.mountPoint + imagePath);

  sftp.on("OPEN", (reqid: number, filename: string, flags: number, attrs: Partial<Attributes>) =>
    serve(reqid, `open ${filename}`, async () => {
      const p = image(filename);
      const how = {
        read: (flags & OPEN_MODE.READ) !== 0,
        write: (flags & OPEN_MODE.WRITE) !== 0,
        append: (flags & OPEN_MODE.APPEND) !== 0,
        create: (flags & OPEN_MODE.CREAT) !== 0,
        truncate: (flags & OPEN_MODE.TRUNC) !== 0,
        exclusive: (flags & OPEN_MODE.EXCL) !== 0,
      };
      const fh = await fs.openFile(p, how, typeof attrs.mode === "number" ? attrs.mode & 0o7777 : 0o644);
      if (how.write) log.line(`sftp: writing ${shown(p)}`);
      sftp.handle(reqid, newHandle({ kind: "file", fh, path: p }));
    }),
  );

  sftp.on("READ", (reqid: number, handle: Buffer, offset: number, length: number) =>
    serve(reqid, "read", async () => {
      const h = fileHandle(handleOf(handle));
      const buf = Buffer.alloc(Math.min(length, MAX_READ));
      const { bytesRead } = await h.fh.read(buf, 0, buf.length, offset);
      if (bytesRead === 0) sftp.status(reqid, STATUS_CODE.EOF);
      else sftp.data(reqid, buf.subarray(0, bytesRead));
    }),
  );

  sftp.on("WRITE", (reqid: number, handle: Buffer, offset: number, data: Buffer) =>
    serve(reqid, "write", async () => {
      const h = fileHandle(handleOf(handle));
      for (let done = 0; done < data.length; ) {
        const { bytesWritten } = await h.fh.write(data, done, data.length - done, offset + done);
        done += bytesWritten;
      }
      sftp.status(reqid, STATUS_CODE.OK);
    }),
  );

  sftp.on("CLOSE", (reqid: number, handle: Buffer) =>
    serve(reqid, "close", async () => {
      const h = handleOf(handle);
      if (!h) throw badHandle();
      dropHandle(handle);
      if (h.kind === "file") await h.fh.close();
      sftp.status(reqid, STATUS_CODE.OK);
    }),
  );

  sftp.on("FSTAT", (reqid: number, handle: Buffer) =>
    serve(reqid, "fstat", async () => {
      sftp.attrs(reqid, attrsOf(await fileHandle(handleOf(handle)).fh.stat()));
    }),
  );

  sftp.on("FSETSTAT", (reqid: number, handle: Buffer, attrs: Partial<Attributes>) =>
    serve(reqid, "fsetstat", async () => {
      const { fh } = fileHandle(handleOf(handle));
      if (attrs.size !== undefined) await fh.truncate(attrs.size);
      if (attrs.uid !== undefined || attrs.gid !== undefined) {
        const st = await fh.stat();
        await fh.chown(attrs.uid ?? st.uid, attrs.gid ?? st.gid);
      }
      if (attrs.mode !== undefined) await fh.chmod(attrs.mode & 0o7777);
      if (attrs.atime !== undefined || attrs.mtime !== undefined) {
        const st = await fh.stat();
        await fh.utimes(attrs.atime ?? st.atimeMs / 1000, attrs.mtime ?? st.mtimeMs / 1000);
      }
      sftp.status(reqid, STATUS_CODE.OK);
    }),
  );

  const onStat = (follow: boolean) => (reqid: number, p: string) =>
    serve(reqid, `stat ${p}`, async () => {
      const at = locate(view, p);
      if (at.kind === "virtual") return sftp.attrs(reqid, virtualDirAttrs());
      sftp.attrs(reqid, attrsOf(await fs.stat(image(p), follow)));
    });
  sftp.on("STAT", onStat(true));
  sftp.on("LSTAT", onStat(false));

  sftp.on("SETSTAT", (reqid: number, p: string, attrs: Partial<Attributes>) =>
    serve(reqid, `setstat ${p}`, async () => {
      await fs.setAttributes(image(p), {
        mode: attrs.mode,
        uid: attrs.uid,
        gid: attrs.gid,
        size: attrs.size,
        atime: attrs.atime,
        mtime: attrs.mtime,
      });
      sftp.status(reqid, STATUS_CODE.OK);
    }),
  );

  sftp.on("OPENDIR", (reqid: number, p: string) =>
    serve(reqid, `opendir ${p}`, async () => {
      const at = locate(view, p);
      let entries: Entry[];
      if (at.kind === "virtual") {
        entries = at.children.map((name) => ({ filename: name, longname: longname(name, virtualDirAttrs()), attrs: virtualDirAttrs() }));
      } else {
        entries = (await fs.list(image(p))).map(({ name, stats }) => ({ filename: name, longname: longname(name, attrsOf(stats)), attrs: attrsOf(stats) }));
      }
      sftp.handle(reqid, newHandle({ kind: "dir", entries }));
    }),
  );

  sftp.on("READDIR", (reqid: number, handle: Buffer) =>
    serve(reqid, "readdir", async () => {
      const h = handleOf(handle);
      if (!h || h.kind !== "dir") throw badHandle();
      if (h.entries.length === 0) return sftp.status(reqid, STATUS_CODE.EOF);
      sftp.name(reqid, h.entries.splice(0, DIR_BATCH));
    }),
  );

  sftp.on("REALPATH", (reqid: number, p: string) =>
    serve(reqid, `realpath ${p}`, async () => {
      const at = locate(view, p === "" ? "." : p);
      let resolved: string;
      if (at.kind === "image") resolved = shown(await fs.realpath(at.path));
      else if (at.kind === "virtual") resolved = at.path;
      else throw Object.assign(new Error(`${p}: not served (outside the image)`), { code: "ENOENT" });
      sftp.name(reqid, [{ filename: resolved, longname: resolved, attrs: {} as Attributes }]);
    }),
  );

  sftp.on("READLINK", (reqid: number, p: string) =>
    serve(reqid, `readlink ${p}`, async () => {
      const target = await fs.readlink(image(p));
      sftp.name(reqid, [{ filename: target, longname: target, attrs: {} as Attributes }]);
    }),
  );

  const mutate = (what: string, fn: () => Promise<void>) => (reqid: number) =>
    serve(reqid, what, async () => {
      await fn();
      log.line(`sftp: ${what}`);
      sftp.status(reqid, STATUS_CODE.OK);
    });
  sftp.on("MKDIR", (reqid: number, p: string, attrs: Partial<Attributes>) =>
    mutate(`mkdir ${p}`, () => fs.mkdir(image(p), typeof attrs.mode === "number" ? attrs.mode & 0o7777 : 0o755))(reqid),
  );
  sftp.on("RMDIR", (reqid: number, p: string) => mutate(`rmdir ${p}`, () => fs.rmdir(image(p)))(reqid));
  sftp.on("REMOVE", (reqid: number, p: string) => mutate(`remove ${p}`, () => fs.unlink(image(p)))(reqid));
  sftp.on("RENAME", (reqid: number, from: string, to: string) => mutate(`rename ${from} ${to}`, () => fs.rename(image(from), image(to)))(reqid));
  // ssh2 hands over (link, target) whatever order the client used (OpenSSH swaps them on the wire).
  sftp.on("SYMLINK", (reqid: number, linkPath: string, target: string) =>
    mutate(`symlink ${linkPath} -> ${target}`, () => fs.symlink(target, image(linkPath)))(reqid),
  );

  const closeAll = () => {
    for (const h of handles.values()) if (h.kind === "file") void h.fh.close().catch(() => {});
    handles.clear();
  };
  sftp.on("close", closeAll);
  sftp.on("end", () => {
    // The client sent EOF (scp and sftp do when done): close the channel, or they wait forever.
    closeAll();
    sendExitStatus(sftp, 0);
    sftp.end();
  });
}

/**
 * ssh2's SFTP stream has no exit(), but OpenSSH's scp counts a channel closed without an
 * exit-status as failed (exit 1), so send the one sshd sends, through ssh2's protocol object.
 */
function sendExitStatus(sftp: SFTPWrapper, code: number): void {
  const s = sftp as unknown as { _protocol?: { exitStatus(id: number, status: number): void }; outgoing?: { id: number; state: string } };
  if (s._protocol && s.outgoing?.state === "open") s._protocol.exitStatus(s.outgoing.id, code);
}

function fileHandle(h: Handle | undefined): Extract<Handle, { kind: "file" }> {
  if (!h || h.kind !== "file") throw badHandle();
  return h;
}

function badHandle(): Error {
  return Object.assign(new Error("invalid handle"), { code: "EBADF" });
}

function statusOf(e: NodeJS.ErrnoException): [number, string] {
  switch (e.code) {
    case "ENOENT":
    case "ENOTDIR":
      return [STATUS_CODE.NO_SUCH_FILE, "No such file"];
    case "EACCES":
    case "EPERM":
    case "EROFS":
    case "ELOOP":
    case "EBUSY":
    case "EXDEV":
      return [STATUS_CODE.PERMISSION_DENIED, e.message.replace(/^[A-Z]+: /, "")];
    default:
      return [STATUS_CODE.FAILURE, e.message.replace(/^[A-Z]+: /, "")];
  }
}

function attrsOf(st: Stats): Attributes {
  return {
    mode: st.mode,
    uid: st.uid,
    gid: st.gid,
    size: st.size,
    atime: Math.floor(st.atimeMs / 1000),
    mtime: Math.floor(st.mtimeMs / 1000),
  };
}

function virtualDirAttrs(): Attributes {
  return { mode: 0o40555, uid: 0, gid: 0, size: 0, atime: 0, mtime: 0 };
}

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/** An `ls -l` line, as sftp's `ls -l` prints it (numeric owners: the image's names are its own). */
export function longname(name: string, a: Attributes, now = Date.now()): string {
  const t = new Date(a.mtime * 1000);
  const recent = Math.abs(now - t.getTime()) < 182 * 24 * 3600 * 1000;
  const when = `${MONTHS[t.getMonth()]} ${String(t.getDate()).padStart(2)} ${recent ? `${pad2(t.getHours())}:${pad2(t.getMinutes())}` : ` ${t.getFullYear()}`}`;
  return `${modeString(a.mode)}    1 ${String(a.uid).padEnd(8)} ${String(a.gid).padEnd(8)} ${String(a.size).padStart(8)} ${when} ${name}`;
}

function pad2(n: number): string {
  return String(n).padStart(2, "0");
}

export function modeString(mode: number): string {
  const type = { 0o040000: "d", 0o120000: "l", 0o020000: "c", 0o060000: "b", 0o010000: "p", 0o140000: "s" }[mode & 0o170000] ?? "-";
  const rwx = (m: number, special: boolean, ch: string) =>
    `${m & 4 ? "r" : "-"}${m & 2 ? "w" : "-"}${special ? (m & 1 ? ch : ch.toUpperCase()) : m & 1 ? "x" : "-"}`;
  return (
    type +
    rwx((mode >> 6) & 7, (mode & 0o4000) !== 0, "s") +
    rwx((mode >> 3) & 7, (mode & 0o2000) !== 0, "s") +
    rwx(mode & 7, (mode & 0o1000) !== 0, "t")
  );
}
