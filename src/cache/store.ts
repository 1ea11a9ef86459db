/**
 * The cache: content-addressed entries under `<cache>/layers/<key>/` (filesystem layers: `tree/`
 * is the overlay upper dir, or the whole root for a base layer; `outputs/` holds files the stage
 * exported, such as a flavor's kernel) and `<cache>/artifacts/<key>/` (files users download).
 *
 * An entry is built in the build's work dir and renamed into place only when whole, so a killed
 * build never leaves a half layer that a later build would trust. Each entry keeps its key.json
 * (why it has this key) and meta.json (what it is, how big, how long it took).
 */
import { mkdir, readdir, readFile, rename, stat, utimes, writeFile } from "node:fs/promises";
import path from "node:path";
import { capture, type LogSink } from "../host/exec.js";
import { removeTree } from "../host/workdir.js";
import { canonicalJson, type KeyRecord } from "./key.js";

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
}

export interface EntryInfo {
  section: Section;
  key: string;
  meta: EntryMeta;
  lastUsed: Date;
}

export interface PendingEntry {
  key: string;
  section: Section;
  /** Scratch dir in the work dir; `tree` and `outputs` live inside it. */
  dir: string;
  tree: string;
  outputs: string;
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

  async get(section: Section, key: string): Promise<EntryMeta | undefined> {
    try {
      const meta = JSON.parse(await readFile(path.join(this.entryDir(section, key), "meta.json"), "utf8")) as EntryMeta;
      const now = new Date();
      await utimes(path.join(this.entryDir(section, key), "meta.json"), now, now).catch(() => {}); // LRU stamp
      return meta;
    } catch {
      return undefined;
    }
  }

  async begin(section: Section, key: string, workDir: string): Promise<PendingEntry> {
    const dir = path.join(workDir, "pending", `${section}-${key}`);
    const entry = { key, section, dir, tree: path.join(dir, "tree"), outputs: path.join(dir, "outputs") };
    await mkdir(entry.outputs, { recursive: true });
    if (section === "layers") await mkdir(entry.tree, { recursive: true });
    return entry;
  }

  /**
   * Moves a finished entry into the cache. If another build got there first, keeps theirs, unless
   * `replace` (a forced rebuild): then the new entry takes the place of the old one.
   */
  async commit(entry: PendingEntry, record: KeyRecord, meta: Omit<EntryMeta, "size" | "created">, log: LogSink, opts: { replace?: boolean } = {}): Promise<EntryMeta> {
    const size = Number((await capture(["du", "-sb", "--one-file-system", entry.dir])).split(/\s/)[0]);
    const full: EntryMeta = { ...meta, size, created: new Date().toISOString() };
    await writeFile(path.join(entry.dir, "key.json"), JSON.stringify(JSON.parse(canonicalJson(record)), null, 1) + "\n");
    await writeFile(path.join(entry.dir, "meta.json"), JSON.stringify(full, null, 1) + "\n");
    const dest = this.entryDir(entry.section, entry.key);
    await mkdir(path.dirname(dest), { recursive: true });
    try {
      await rename(entry.dir, dest);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== "ENOTEMPTY" && code !== "EEXIST") throw e;
      if (opts.replace) {
        const old = `${entry.dir}.replaced`;
        await rename(dest, old);
        await rename(entry.dir, dest);
        await removeTree(old, log);
        return full;
      }
      await removeTree(entry.dir, log);
      return (await this.get(entry.section, entry.key)) ?? full;
    }
    return full;
  }

  async keyRecord(section: Section, key: string): Promise<KeyRecord | undefined> {
    try {
      return JSON.parse(await readFile(path.join(this.entryDir(section, key), "key.json"), "utf8")) as KeyRecord;
    } catch {
      return undefined;
    }
  }

  async list(): Promise<EntryInfo[]> {
    const out: EntryInfo[] = [];
    for (const section of ["layers", "artifacts"] as const) {
      const keys = await readdir(path.join(this.root, section)).catch(() => [] as string[]);
      for (const key of keys) {
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

  async remove(section: Section, key: string, log: LogSink): Promise<void> {
    await removeTree(this.entryDir(section, key), log);
  }

  /**
   * Removes least recently used entries until the cache holds at most maxBytes. The apt archive
   * cache is not counted or touched: it is small next to the layers and saves downloads.
   */
  async prune(maxBytes: number, log: LogSink): Promise<EntryInfo[]> {
    const all = (await this.list()).sort((a, b) => a.lastUsed.getTime() - b.lastUsed.getTime());
    let total = all.reduce((n, e) => n + e.meta.size, 0);
    const removed: EntryInfo[] = [];
    for (const e of all) {
      if (total <= maxBytes) break;
      await this.remove(e.section, e.key, log);
      total -= e.meta.size;
      removed.push(e);
    }
    return removed;
  }
}
