/**
 * The default object store: a directory. Object `<bucket>/<key>` is the plain file
 * `<root>/<bucket>/<key>` (so an operator can look at it, rsync it, or serve the tree), and its
 * etag, content type and metadata live in a sidecar at `<root>/.kiln/meta/<bucket>/<key>` (JSON).
 * `.kiln` cannot clash with a bucket: bucket names start with a letter or digit.
 *
 * put() writes to `<root>/.kiln/tmp/`, flushes, then renames the data and the sidecar into place,
 * so a reader sees the old object or the new one, never part of one. The sidecar records the data
 * file's inode; a reader that finds them out of step (a put between its two renames, or a crash
 * there) waits a moment, and failing that recomputes the etag from the data and drops metadata.
 *
 * A directory cannot hold both a file `a` and a directory `a/`, so unlike S3 the keys `a` and
 * `a/b` cannot coexist (IMS keys never do: `<image_id>/rootfs`, `recipes/<id>/recipe.tar.gz`);
 * such a put is refused, as are keys with empty, `.` or `..` segments.
 *
 * Presigned URLs point at the Kiln service (`publicUrl`), which answers them with
 * serveSignedObject() (fs-presign.ts): HMAC-signed like S3's, with the key in `<root>/.kiln/signing-key`
 * shared by every process using this root.
 */
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { constants, createReadStream, createWriteStream } from "node:fs";
import { copyFile, mkdir, open, readdir, readFile, rename, rm, rmdir, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { pathToFileURL } from "node:url";
import { isKilnError } from "../errors.js";
import { ObjectNotFound, type ObjectInfo, type ObjectStore, type ObjectSummary, type PutOptions } from "./object-store.js";
import { signObjectUrl, verifyObjectUrl, type PresignCheck } from "./fs-presign.js";
import { missingBucket, storeBadRequest, storeConfigError, storeFailed } from "./store-errors.js";

export interface FsStoreOptions {
  root: string;
  /** Where the service answers presigned GETs, e.g. `http://kiln.example:8080/objects`. */
  publicUrl?: string;
  /** HMAC key for presigned URLs; default: `<root>/.kiln/signing-key`, made on first use. */
  signingKey?: string;
}

interface Sidecar {
  etag: string;
  size: number;
  /** Inode of the data file this sidecar describes (see the file comment). */
  ino: number;
  contentType: string;
  metadata: Record<string, string>;
}

// S3's rules (lower-case letters, digits, dots, hyphens; 3–63), which also keep names path-safe.
const BUCKET_NAME = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
const TEMP_MAX_AGE_MS = 24 * 3600_000;

export class FsStore implements ObjectStore {
  readonly url: string;
  readonly root: string;
  private publicUrl: string | undefined;
  private secret: string | undefined;
  /** In-process queue per object, so two puts of one key cannot interleave their renames. */
  private readonly writing = new Map<string, Promise<unknown>>();

  private constructor(opts: FsStoreOptions) {
    this.root = path.resolve(opts.root);
    this.url = pathToFileURL(this.root).href;
    this.publicUrl = opts.publicUrl?.replace(/\/+$/, "");
    this.secret = opts.signingKey;
  }

  /** Makes the root if needed and removes temp files a killed process left a day or more ago. */
  static async open(opts: FsStoreOptions): Promise<FsStore> {
    const store = new FsStore(opts);
    const tmp = path.join(store.root, ".kiln", "tmp");
    try {
      await mkdir(tmp, { recursive: true });
      await mkdir(path.join(store.root, ".kiln", "meta"), { recursive: true });
    } catch (e) {
      throw storeConfigError("fs", `cannot use ${store.root} as the store root: ${(e as Error).message}`);
    }
    for (const name of await readdir(tmp)) {
      const file = path.join(tmp, name);
      const st = await stat(file).catch(() => undefined);
      if (st && Date.now() - st.mtimeMs > TEMP_MAX_AGE_MS) await rm(file, { force: true });
    }
    return store;
  }

  async ensureBucket(bucket: string): Promise<void> {
    await mkdir(this.bucketDir(bucket), { recursive: true });
    await mkdir(this.metaPath(bucket, ""), { recursive: true });
  }

  async put(bucket: string, key: string, body: Readable | Buffer | string, opts: PutOptions = {}): Promise<ObjectInfo> {
    this.dataPath(bucket, key);
    await this.requireBucket(bucket, `put ${bucket}/${key}`);
    const tmp = this.tempPath();
    try {
      const hash = createHash("md5");
      let size = 0;
      const source = typeof body === "string" || Buffer.isBuffer(body) ? Readable.from([Buffer.from(body)]) : body;
      await pipeline(
        source,
        async function* (chunks: AsyncIterable<Buffer | string>) {
          for await (const chunk of chunks) {
            const bytes = typeof chunk === "string" ? Buffer.from(chunk) : chunk;
            hash.update(bytes);
            size += bytes.length;
            yield bytes;
          }
        },
        // flush: fsync before close, so a crash after the rename cannot leave a short file.
        createWriteStream(tmp, { flags: "wx", flush: true }),
      );
      if (opts.size !== undefined && opts.size !== size) {
        throw storeFailed("fs", `put ${bucket}/${key}`, `the body had ${size} bytes, but its size was given as ${opts.size}`);
      }
      return await this.commit(bucket, key, tmp, {
        etag: hash.digest("hex"),
        contentType: opts.contentType ?? "application/octet-stream",
        metadata: lowerCaseKeys(opts.metadata ?? {}),
      });
    } catch (e) {
      // The body stream failed, or the disk did (ENOSPC): the old object, if any, is untouched.
      throw isKilnError(e) ? e : storeFailed("fs", `put ${bucket}/${key}`, (e as Error).message, e);
    } finally {
      await rm(tmp, { force: true });
    }
  }

  async get(bucket: string, key: string, range?: { start: number; end?: number }): Promise<Readable> {
    const file = this.dataPath(bucket, key);
    const fh = await open(file, "r").catch((e: NodeJS.ErrnoException) => {
      throw isMissing(e) ? new ObjectNotFound(bucket, key) : e;
    });
    const st = await fh.stat();
    if (!st.isFile()) {
      await fh.close();
      throw new ObjectNotFound(bucket, key);
    }
    let start = 0;
    let end = st.size - 1;
    if (!range && st.size === 0) {
      await fh.close();
      return Readable.from([]);
    }
    if (range) {
      if (range.start >= st.size || (range.end !== undefined && range.end < range.start)) {
        await fh.close();
        throw storeBadRequest("fs", `get ${bucket}/${key}`, `range ${range.start}-${range.end ?? ""} is outside the object's ${st.size} bytes`);
      }
      start = range.start;
      end = Math.min(range.end ?? end, end);
    }
    return fh.createReadStream({ start, end }) as Readable;
  }

  async head(bucket: string, key: string): Promise<ObjectInfo> {
    const file = this.dataPath(bucket, key);
    for (let attempt = 0; attempt < 20; attempt++) {
      const st = await stat(file).catch((e: NodeJS.ErrnoException) => {
        if (isMissing(e)) return undefined;
        throw e;
      });
      if (!st?.isFile()) throw new ObjectNotFound(bucket, key);
      const side = await this.readSidecar(bucket, key);
      if (side && side.ino === st.ino && side.size === st.size) {
        return { bucket, key, size: st.size, etag: side.etag, lastModified: st.mtime, metadata: side.metadata, contentType: side.contentType };
      }
      await new Promise((r) => setTimeout(r, 5)); // a put between its two renames
    }
    return this.repairSidecar(bucket, key);
  }

  async list(bucket: string, prefix = ""): Promise<ObjectSummary[]> {
    await this.requireBucket(bucket, `list ${bucket}/${prefix}`);
    // Walk only the deepest directory the prefix names; a segment no key may have matches nothing.
    const dirPart = prefix.includes("/") ? prefix.slice(0, prefix.lastIndexOf("/")) : "";
    if (dirPart !== "" && dirPart.split("/").some(isBadSegment)) return [];
    const keys: string[] = [];
    await walk(path.join(this.bucketDir(bucket), dirPart), dirPart === "" ? "" : `${dirPart}/`, keys);
    const found: ObjectSummary[] = [];
    for (const key of keys.filter((k) => k.startsWith(prefix)).sort(byteOrder)) {
      try {
        const { metadata: _m, contentType: _c, ...summary } = await this.head(bucket, key);
        found.push(summary);
      } catch (e) {
        if (!(e instanceof ObjectNotFound)) throw e; // deleted while we listed
      }
    }
    return found;
  }

  async delete(bucket: string, key: string): Promise<void> {
    const file = this.dataPath(bucket, key);
    await this.requireBucket(bucket, `delete ${bucket}/${key}`);
    await this.serialize(bucket, key, async () => {
      const st = await stat(file).catch(() => undefined);
      if (st?.isDirectory()) return; // a "directory" of other keys is not an object
      await rm(file, { force: true });
      await rm(this.metaPath(bucket, key), { force: true });
      await pruneEmptyDirs(this.bucketDir(bucket), path.dirname(file));
      await pruneEmptyDirs(this.metaPath(bucket, ""), path.dirname(this.metaPath(bucket, key)));
    });
  }

  async copy(bucket: string, fromKey: string, toKey: string): Promise<ObjectInfo> {
    const from = this.dataPath(bucket, fromKey);
    this.dataPath(bucket, toKey);
    await this.requireBucket(bucket, `copy ${bucket}/${fromKey} to ${toKey}`);
    const tmp = this.tempPath();
    try {
      // Copy, then check the source is still the file whose sidecar we read (a put may replace it).
      for (let attempt = 0; ; attempt++) {
        const src = await this.head(bucket, fromKey);
        const before = await stat(from);
        await rm(tmp, { force: true });
        await copyFile(from, tmp, constants.COPYFILE_FICLONE);
        const after = await stat(from).catch(() => undefined);
        if (after?.ino !== before.ino && attempt < 3) continue;
        const fh = await open(tmp, "r+");
        await fh.sync().finally(() => fh.close());
        return await this.commit(bucket, toKey, tmp, { etag: src.etag, contentType: src.contentType ?? "application/octet-stream", metadata: src.metadata });
      }
    } finally {
      await rm(tmp, { force: true });
    }
  }

  async presignGet(bucket: string, key: string, seconds: number): Promise<string> {
    this.dataPath(bucket, key);
    if (!this.publicUrl) {
      throw storeConfigError("fs", '"publicUrl" is required to presign URLs: the address where the Kiln service answers them', "KILN_STORE_PUBLIC_URL");
    }
    return signObjectUrl(this.publicUrl, await this.signingKey(), bucket, key, seconds);
  }

  /**
   * Sets where presigned URLs point unless the store was opened with a `publicUrl`, and returns
   * the one in effect. For `kiln serve`, which opens its store before it listens and so learns its
   * own address (the port, with --listen …:0) only afterwards.
   */
  setDefaultPublicUrl(publicUrl: string): string {
    this.publicUrl ??= publicUrl.replace(/\/+$/, "");
    return this.publicUrl;
  }

  /** Checks a presigned URL's path and query below `publicUrl` ("bucket/key?expires=…&signature=…"). */
  async checkPresigned(target: string, now = Date.now()): Promise<PresignCheck> {
    return verifyObjectUrl(await this.signingKey(), target, now);
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.writing.values()]);
  }

  // ── places ──────────────────────────────────────────────────────────────────────────────

  private bucketDir(bucket: string): string {
    if (!BUCKET_NAME.test(bucket)) {
      throw storeBadRequest("fs", `bucket "${bucket}"`, "a bucket name has 3–63 lower-case letters, digits, dots or hyphens");
    }
    return path.join(this.root, bucket);
  }

  /** The data file of an object; refuses keys that are not a clean relative path. */
  private dataPath(bucket: string, key: string): string {
    const dir = this.bucketDir(bucket);
    if (key === "" || key.includes("\0") || key.split("/").some(isBadSegment)) {
      throw storeBadRequest("fs", `key "${key}"`, "a key is a relative path without empty, '.' or '..' segments");
    }
    return path.join(dir, key);
  }

  private metaPath(bucket: string, key: string): string {
    return path.join(this.root, ".kiln", "meta", bucket, key);
  }

  private tempPath(): string {
    return path.join(this.root, ".kiln", "tmp", randomUUID());
  }

  // ── writing ─────────────────────────────────────────────────────────────────────────────

  private async requireBucket(bucket: string, what: string): Promise<void> {
    const st = await stat(this.bucketDir(bucket)).catch(() => undefined);
    if (!st?.isDirectory()) throw missingBucket("fs", what, bucket);
  }

  /** Renames a finished temp file (and then its sidecar) into place as `bucket/key`. */
  private async commit(bucket: string, key: string, tmp: string, side: Omit<Sidecar, "ino" | "size">): Promise<ObjectInfo> {
    return this.serialize(bucket, key, async () => {
      const st = await stat(tmp);
      const tmpMeta = `${tmp}.meta`;
      await writeFile(tmpMeta, JSON.stringify({ ...side, ino: st.ino, size: st.size } satisfies Sidecar));
      const file = this.dataPath(bucket, key);
      try {
        await renameInto(tmp, file);
        await renameInto(tmpMeta, this.metaPath(bucket, key));
      } catch (e) {
        await rm(tmpMeta, { force: true });
        const code = (e as NodeJS.ErrnoException).code;
        if (code === "ENOTDIR" || code === "EEXIST" || code === "EISDIR") {
          throw storeBadRequest("fs", `put ${bucket}/${key}`, "the key clashes with another key that is its prefix or extends it (a/b beside a)");
        }
        throw e;
      }
      const done = await stat(file);
      return { bucket, key, size: done.size, etag: side.etag, lastModified: done.mtime, metadata: side.metadata, contentType: side.contentType };
    });
  }

  private async serialize<T>(bucket: string, key: string, fn: () => Promise<T>): Promise<T> {
    const id = `${bucket}/${key}`;
    const before = this.writing.get(id) ?? Promise.resolve();
    const mine = before.catch(() => {}).then(fn);
    this.writing.set(id, mine);
    try {
      return await mine;
    } finally {
      if (this.writing.get(id) === mine) this.writing.delete(id);
    }
  }

  private async readSidecar(bucket: string, key: string): Promise<Sidecar | undefined> {
    try {
      return JSON.parse(await readFile(this.metaPath(bucket, key), "utf8")) as Sidecar;
    } catch {
      return undefined;
    }
  }

  /** The data is whole but its sidecar is stale or gone (a crash between the renames). */
  private async repairSidecar(bucket: string, key: string): Promise<ObjectInfo> {
    return this.serialize(bucket, key, async () => {
      const file = this.dataPath(bucket, key);
      const hash = createHash("md5");
      await pipeline(createReadStream(file), hash);
      const st = await stat(file);
      const side: Sidecar = { etag: hash.digest("hex"), size: st.size, ino: st.ino, contentType: "application/octet-stream", metadata: {} };
      const tmpMeta = `${this.tempPath()}.meta`;
      await writeFile(tmpMeta, JSON.stringify(side));
      await renameInto(tmpMeta, this.metaPath(bucket, key));
      return { bucket, key, size: st.size, etag: side.etag, lastModified: st.mtime, metadata: {}, contentType: side.contentType };
    });
  }

  private async signingKey(): Promise<string> {
    if (this.secret) return this.secret;
    const file = path.join(this.root, ".kiln", "signing-key");
    try {
      await writeFile(file, randomBytes(32).toString("hex"), { flag: "wx", mode: 0o600 });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
    }
    this.secret = (await readFile(file, "utf8")).trim();
    return this.secret;
  }
}

/** rename() into a directory that is made first; retried when a delete pruned it meanwhile. */
async function renameInto(from: string, to: string): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    await mkdir(path.dirname(to), { recursive: true });
    try {
      await rename(from, to);
      return;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT" || attempt >= 3) throw e;
    }
  }
}

async function walk(dir: string, keyPrefix: string, out: string[]): Promise<void> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (e) {
    if (isMissing(e as NodeJS.ErrnoException)) return;
    throw e;
  }
  for (const e of entries) {
    if (e.isDirectory()) await walk(path.join(dir, e.name), `${keyPrefix}${e.name}/`, out);
    else if (e.isFile()) out.push(keyPrefix + e.name);
  }
}

async function pruneEmptyDirs(base: string, dir: string): Promise<void> {
  while (dir.startsWith(base + path.sep)) {
    try {
      await rmdir(dir);
    } catch {
      return; // not empty (or already gone): stop
    }
    dir = path.dirname(dir);
  }
}

function isBadSegment(s: string): boolean {
  return s === "" || s === "." || s === "..";
}

function isMissing(e: NodeJS.ErrnoException): boolean {
  return e.code === "ENOENT" || e.code === "ENOTDIR";
}

/** S3 lists keys in UTF-8 byte order; JS compares UTF-16 code units, which differ above U+FFFF. */
function byteOrder(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

function lowerCaseKeys(m: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(m).map(([k, v]) => [k.toLowerCase(), v]));
}
