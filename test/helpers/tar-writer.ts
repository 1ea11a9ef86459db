/**
 * Writes tar archives member by member, for tests that need what GNU tar will not make from a
 * tree: names with "..", absolute names, links that escape, xattrs on a host without setfattr.
 * ustar headers, preceded by a pax header when a name is long, not ASCII, or carries xattrs.
 * Also reads pax xattrs back (readTarXattrs), which is how tests see xattrs without getfattr.
 */

export interface TarEntry {
  name: string;
  type: "file" | "dir" | "symlink" | "hardlink" | "char" | "block" | "fifo";
  content?: string | Buffer;
  /** Link target for symlink and hardlink. */
  target?: string;
  mode?: number;
  uid?: number;
  gid?: number;
  major?: number;
  minor?: number;
  mtime?: number;
  xattrs?: Record<string, string>;
}

const TYPEFLAG: Record<TarEntry["type"], string> = { file: "0", hardlink: "1", symlink: "2", char: "3", block: "4", dir: "5", fifo: "6" };

export function writeTar(entries: TarEntry[]): Buffer {
  const blocks: Buffer[] = [];
  for (const e of entries) {
    const body = e.type === "file" ? Buffer.from(e.content ?? "") : Buffer.alloc(0);
    const target = e.target ?? "";
    const pax: Array<[string, string]> = [];
    if (Buffer.byteLength(e.name) > 99 || !/^[\x20-\x7e]*$/.test(e.name)) pax.push(["path", e.name]);
    if (Buffer.byteLength(target) > 99 || !/^[\x20-\x7e]*$/.test(target)) pax.push(["linkpath", target]);
    for (const [k, v] of Object.entries(e.xattrs ?? {})) pax.push([`SCHILY.xattr.${k}`, v]);
    if (pax.length > 0) {
      const records = Buffer.concat(pax.map(([k, v]) => paxRecord(k, v)));
      blocks.push(header({ name: "PaxHeaders/x", typeflag: "x", size: records.length, mode: 0o644 }), pad(records));
    }
    blocks.push(
      header({
        name: e.name,
        typeflag: TYPEFLAG[e.type],
        size: body.length,
        mode: e.mode ?? (e.type === "dir" ? 0o755 : e.type === "symlink" ? 0o777 : 0o644),
        uid: e.uid,
        gid: e.gid,
        mtime: e.mtime,
        linkname: target,
        major: e.major,
        minor: e.minor,
      }),
      pad(body),
    );
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

function paxRecord(key: string, value: string): Buffer {
  const payload = ` ${key}=${value}\n`;
  const bytes = Buffer.byteLength(payload);
  let len = bytes + 1;
  while (String(len).length + bytes !== len) len = String(len).length + bytes;
  return Buffer.from(`${len}${payload}`);
}

function pad(b: Buffer): Buffer {
  const rest = b.length % 512;
  return rest === 0 ? b : Buffer.concat([b, Buffer.alloc(512 - rest)]);
}

interface HeaderFields {
  name: string;
  typeflag: string;
  size: number;
  mode: number;
  uid?: number;
  gid?: number;
  mtime?: number;
  linkname?: string;
  major?: number;
  minor?: number;
}

function header(f: HeaderFields): Buffer {
  const h = Buffer.alloc(512);
  // Names that do not fit were put in the pax header; the ustar field keeps a truncated copy.
  h.write(Buffer.from(f.name).subarray(0, 99).toString("latin1"), 0, "latin1");
  octal(h, 100, 8, f.mode);
  octal(h, 108, 8, f.uid ?? 0);
  octal(h, 116, 8, f.gid ?? 0);
  octal(h, 124, 12, f.size);
  octal(h, 136, 12, f.mtime ?? 1700000000);
  h.write(f.typeflag, 156, "latin1");
  h.write(Buffer.from(f.linkname ?? "").subarray(0, 99).toString("latin1"), 157, "latin1");
  h.write("ustar\x0000", 257, "latin1");
  h.write("root", 265, "latin1");
  h.write("root", 297, "latin1");
  octal(h, 329, 8, f.major ?? 0);
  octal(h, 337, 8, f.minor ?? 0);
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(sum.toString(8).padStart(6, "0") + "\0 ", 148, "latin1");
  return h;
}

function octal(h: Buffer, offset: number, width: number, n: number): void {
  h.write(n.toString(8).padStart(width - 1, "0") + "\0", offset, "latin1");
}

/** Member name → xattrs, from the pax headers of an uncompressed posix-format archive. */
export function readTarXattrs(tar: Buffer): Map<string, Record<string, string>> {
  const out = new Map<string, Record<string, string>>();
  let pending: Record<string, string> = {};
  let pendingPath: string | undefined;
  for (let off = 0; off + 512 <= tar.length; ) {
    const h = tar.subarray(off, off + 512);
    if (h.every((b) => b === 0)) break;
    const size = parseInt(h.subarray(124, 136).toString("latin1").replace(/\0.*$/s, "").trim() || "0", 8);
    const type = String.fromCharCode(h[156]!);
    const body = tar.subarray(off + 512, off + 512 + size);
    off += 512 + Math.ceil(size / 512) * 512;
    if (type === "x") {
      for (const [k, v] of parsePax(body)) {
        if (k.startsWith("SCHILY.xattr.")) pending[k.slice("SCHILY.xattr.".length)] = v;
        if (k === "path") pendingPath = v;
      }
      continue;
    }
    if (type === "g") continue;
    const prefix = h.subarray(345, 500).toString("latin1").replace(/\0.*$/s, "");
    const short = h.subarray(0, 100).toString("latin1").replace(/\0.*$/s, "");
    const name = pendingPath ?? (prefix ? `${prefix}/${short}` : short);
    if (Object.keys(pending).length > 0) out.set(name.replace(/^\.\//, "").replace(/\/$/, ""), pending);
    pending = {};
    pendingPath = undefined;
  }
  return out;
}

function parsePax(body: Buffer): Array<[string, string]> {
  const records: Array<[string, string]> = [];
  let off = 0;
  while (off < body.length) {
    const space = body.indexOf(0x20, off);
    if (space < 0) break;
    const len = Number(body.subarray(off, space).toString("latin1"));
    if (!len) break;
    const rec = body.subarray(space + 1, off + len - 1);
    const eq = rec.indexOf(0x3d);
    records.push([rec.subarray(0, eq).toString("utf8"), rec.subarray(eq + 1).toString("latin1")]);
    off += len;
  }
  return records;
}
