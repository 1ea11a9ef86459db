/**
 * The cache: content-addressed entries under `<cache>/layers/<key>` (filesystem layers: `tree/`
 * is the overlay upper dir, or the whole root for a base layer; `outputs/` holds files the stage
 * exported, such as a flavor's kernel) and `<cache>/artifacts/<key>` (files users download).
 *
 * A layer whose chroot ran `apt update` may also keep `apt-lists/`: the package indexes it
 * fetched, never part of its tree. Its child layers start from them, so their own `apt update`
 * fetches only the release files and the indexes that changed (docs/cache.md#apt-lists).
 *
 * An entry is built in the build's work dir and renamed into place only when whole, so a killed
 * build never leaves a half layer that a later build would trust. Each entry keeps its key.json
 * (why it has this key, and what it was built on: see Binding in key.ts) and meta.json (what it
 * is, how big, how long it took, and its generation).
 *
 * Generations: `<section>/<key>` is a symlink to `<section>/.gen/<key>.<generation>`, one dir
 * per commit. Replacing an entry (a forced rebuild, or one whose parent was rebuilt) swaps the
 * symlink atomically and leaves the old generation in place, because another build may still
 * have it mounted as a lower dir; a build resolves each entry once and uses that generation's
 * dir to the end. Old generations are garbage that `prune` removes.
 *
 * Locking: builds hold `<cache>/cache.lock` shared for as long as they run, prune holds it
 * exclusive, so prune never removes a dir a running build reads.
 */
import { randomUUID } from "node:crypto";
import { lstat, mkdir, readdir, readFile, readlink, rename, stat, symlink, unlink, utimes, writeFile } from "node:fs/promises";
import path from "node:path";
import { capture, type LogSink } from "../host/exec.js";
import { lockFile, type FileLockOptions } from "../host/file-lock.js";
import type { Releasable } from "../host/scope.js";
import { removeTree } from "../host/workdir.js";
import { canonicalJson, sameBinding, type StoredKeyRecord } from "./key.js";

export type Section = "layers" | "artifacts";

export interface EntryMeta {
  /** Stage name in the plan that made it, e.g. "packages" or "kernel:generic". */
  name: string;
  kind: string;
  created: string;
  seconds: number;
  size: number;
  /** Stage-specific facts (kernel version, artifact digests …). */
  facts: Record<string, unknown>;
  /** A random id given at commit: children record it as their parentGeneration. */
  generation: string;
}

export interface EntryInfo {
  section: Section;
  key: string;
  meta: EntryMeta;
  lastUsed: Date;
}

/** A resolved entry: one generation's dir, which stays put while a build uses it. */
export interface Entry {
  section: Section;
  key: string;
  /** `<section>/.gen/<key>.<generation>` */
  dir: string;
  tree: string;
  outputs: string;
  /** The apt indexes the layer's stage fetched, when it kept them (may not exist). */
  aptLists: string;
  meta: EntryMeta;
  record: StoredKeyRecord;
}

const GEN = ".gen";

export interface PendingEntry {
  key: string;
  section: Section;
  /** Scratch dir in the work dir; `tree` and `outputs` live inside it. */
  dir: string;
  tree: string;
  outputs: string;
  aptLists: string;
}

function entryPaths(dir: string): { tree: string; outputs: string; aptLists: string } {
  return { tree: path.join(dir, "tree"), outputs: path.join(dir, "outputs"), aptLists: path.join(dir, "apt-lists") };
}

export class CacheStore {
  constructor(readonly root: string) {}

  entryDir(section: Section, key: string): string {
    return path.join(this.root, section, key);
  }
  tree(key: string): string {
    return path.join(this.entryDir("layers", key), "tree");
  }
  outputs(section: Section, key: string): string {
    return path.join(this.entryDir(section, key), "outputs");
  }
  get aptArchives(): string {
    return path.join(this.root, "apt", "archives");
  }

  /** Holds the cache lock: builds take it shared for their whole run, prune exclusive. */
  lock(mode: "shared" | "exclusive", opts: Omit<FileLockOptions, "shared"> = {}): Promise<Releasable> {
    return lockFile(path.join(this.root, "cache.lock"), { ...opts, shared: mode === "shared" });
  }

  /**
   * The current generation of an entry, or undefined when there is none (or only an entry in the
   * layout before generations, which nothing can be bound to: it is rebuilt). Marks it used (LRU).
   */
  async resolve(section: Section, key: string, opts: { touch?: boolean } = {}): Promise<Entry | undefined> {
    const link = this.entryDir(section, key);
    let target: string;
    try {
      target = await readlink(link);
    } catch {
      return undefined; // missing, or a plain dir of the old layout
    }
    const dir = path.resolve(path.dirname(link), target);
    try {
      const meta = JSON.parse(await readFile(path.join(dir, "meta.json"), "utf8")) as EntryMeta;
      const record = JSON.parse(await readFile(path.join(dir, "key.json"), "utf8")) as StoredKeyRecord;
      if (typeof meta.generation !== "string") return undefined;
      if (opts.touch !== false) {
        const now = new Date();
        await utimes(path.join(dir, "meta.json"), now, now).catch(() => {}); // LRU stamp
      }
      return { section, key, dir, ...entryPaths(dir), meta, record };
    } catch {
      return undefined;
    }
  }

  async begin(section: Section, key: string, workDir: string): Promise<PendingEntry> {
    const dir = path.join(workDir, "pending", `${section}-${key}`);
    const entry = { key, section, dir, ...entryPaths(dir) };
    await mkdir(entry.outputs, { recursive: true });
    if (section === "layers") await mkdir(entry.tree, { recursive: true });
    return entry;
  }

  /**
   * Moves a finished entry into the cache as a new generation. If another build got there first
   * with an entry built on the same generations, keeps theirs, unless `replace` (a forced
   * rebuild). Otherwise the new generation becomes the entry; the old one stays on disk for
   * builds that still use it, until prune.
   */
  async commit(entry: PendingEntry, record: StoredKeyRecord, meta: Omit<EntryMeta, "size" | "created" | "generation">, log: LogSink, opts: { replace?: boolean } = {}): Promise<Entry> {
    const size = Number((await capture(["du", "-sb", "--one-file-system", entry.dir])).split(/\s/)[0]);
    const generation = randomUUID();
    const full: EntryMeta = { ...meta, size, created: new Date().toISOString(), generation };
    await writeFile(path.join(entry.dir, "key.json"), JSON.stringify(JSON.parse(canonicalJson(record)), null, 1) + "\n");
    await writeFile(path.join(entry.dir, "meta.json"), JSON.stringify(full, null, 1) + "\n");
    const genRoot = path.join(this.root, entry.section, GEN);
    await mkdir(genRoot, { recursive: true });
    const name = `${entry.key}.${generation}`;
    const dir = path.join(genRoot, name);
    await rename(entry.dir, dir);
    const current = await this.resolve(entry.section, entry.key, { touch: false });
    if (current && !opts.replace && sameBinding(current.record, record)) {
      await removeTree(dir, log);
      return current;
    }
    const link = this.entryDir(entry.section, entry.key);
    const tmp = path.join(genRoot, `.link-${generation}`);
    await symlink(path.join(GEN, name), tmp);
    try {
      await rename(tmp, link);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== "EISDIR" && code !== "ENOTEMPTY" && code !== "EEXIST") throw e;
      // A plain dir of the layout before generations: it becomes garbage like an old generation.
      await rename(link, path.join(genRoot, `${entry.key}.old-${generation}`));
      await rename(tmp, link);
    }
    return { section: entry.section, key: entry.key, dir, ...entryPaths(dir), meta: full, record };
  }

  async keyRecord(section: Section, key: string): Promise<StoredKeyRecord | undefined> {
    try {
      return JSON.parse(await readFile(path.join(this.entryDir(section, key), "key.json"), "utf8")) as StoredKeyRecord;
    } catch {
      return undefined;
    }
  }

  async list(): Promise<EntryInfo[]> {
    const out: EntryInfo[] = [];
    for (const section of ["layers", "artifacts"] as const) {
      const keys = await readdir(path.join(this.root, section)).catch(() => [] as string[]);
      for (const key of keys) {
        if (key.startsWith(".")) continue;
        const metaPath = path.join(this.entryDir(section, key), "meta.json");
        try {
          const meta = JSON.parse(await readFile(metaPath, "utf8")) as EntryMeta;
          out.push({ section, key, meta, lastUsed: (await stat(metaPath)).mtime });
        } catch {
          // not an entry (a foreign file); cache ls ignores it
        }
      }
    }
    return out;
  }

  /** The most recent entry made by a stage of this name, to explain why the new key missed. */
  async latestByName(section: Section, name: string): Promise<EntryInfo | undefined> {
    const all = (await this.list()).filter((e) => e.section === section && e.meta.name === name);
    return all.sort((a, b) => b.meta.created.localeCompare(a.meta.created))[0];
  }

  /** Removes an entry: its current generation and the link to it. */
  async remove(section: Section, key: string, log: LogSink): Promise<void> {
    const link = this.entryDir(section, key);
    const target = await readlink(link).catch(() => undefined);
    if (target === undefined) {
      await removeTree(link, log); // a plain dir of the old layout, or nothing
      return;
    }
    await unlink(link);
    await removeTree(path.resolve(path.dirname(link), target), log);
  }

  /**
   * Removes least recently used entries until the cache holds at most maxBytes, each with every
   * entry built on it (its children, their children, an ISO that read its files): an entry whose
   * parent is gone is useless, and left alone it could be paired with a rebuilt parent by an
   * older Kiln. First removes the garbage: old generations that no entry points to. The apt
   * archive cache is not counted or touched: it is small next to the layers and saves downloads.
   *
   * Call it with the exclusive lock held (see lock()): builds hold it shared, so nothing removed
   * here is mounted by a running build.
   */
  async prune(maxBytes: number, log: LogSink): Promise<EntryInfo[]> {
    await this.removeGarbage(log);
    const all = (await this.list()).sort((a, b) => a.lastUsed.getTime() - b.lastUsed.getTime());
    const childrenOf = new Map<string, EntryInfo[]>();
    for (const e of all) {
      const record = await this.keyRecord(e.section, e.key);
      const parents = [record?.parent, ...Object.values(record?.inputs ?? {}).map((v) => /^stage:([0-9a-f]{64})\//.exec(v)?.[1])];
      for (const p of new Set(parents)) if (p) childrenOf.set(p, [...(childrenOf.get(p) ?? []), e]);
    }
    let total = all.reduce((n, e) => n + e.meta.size, 0);
    const removed: EntryInfo[] = [];
    const gone = new Set<string>();
    const removeWithDescendants = async (e: EntryInfo) => {
      if (gone.has(e.key)) return;
      gone.add(e.key);
      for (const child of childrenOf.get(e.key) ?? []) await removeWithDescendants(child);
      await this.remove(e.section, e.key, log);
      total -= e.meta.size;
      removed.push(e);
    };
    for (const e of all) {
      if (total <= maxBytes) break;
      await removeWithDescendants(e);
    }
    return removed;
  }

  /** Removes generations no entry points to (replaced ones), and links a killed commit left. */
  private async removeGarbage(log: LogSink): Promise<void> {
    for (const section of ["layers", "artifacts"] as const) {
      const genRoot = path.join(this.root, section, GEN);
      const names = await readdir(genRoot).catch(() => [] as string[]);
      if (names.length === 0) continue;
      const live = new Set<string>();
      for (const key of await readdir(path.join(this.root, section))) {
        const target = await readlink(this.entryDir(section, key)).catch(() => undefined);
        if (target) live.add(path.basename(target));
      }
      for (const name of names) {
        if (live.has(name)) continue;
        const p = path.join(genRoot, name);
        if ((await lstat(p)).isSymbolicLink()) await unlink(p);
        else await removeTree(p, log);
      }
    }
  }
}
