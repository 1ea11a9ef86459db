/**
 * A stream on disk: `streams/v1/*.json` (+ `.sjson`, `.json.gpg` when signed), the item files
 * under `<release>/<arch>/<version>/…` and `bootloaders/…`, and Kiln's own bookkeeping in
 * `.kiln/` (the orphan ledger for the grace period, what each published version was built from,
 * the writer's lock). Nothing in `.kiln/` is part of the stream; clients never read it.
 *
 * Every file is written beside its final name and renamed into place, so a client reading the
 * tree at any moment sees whole files.
 */
import { open, mkdir, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { KilnError } from "../errors.js";
import { buildIndex, dumpJson, productsPath, streamTimestamp, STREAMS_DIR, type IndexFile, type ProductsFile } from "./format.js";
import { isProcessAlive } from "../host/process-alive.js";

/** What a published version was built from, so `kiln streams sync` can tell whether a new one is due. */
export interface BuildRecord {
  recipe: { name: string; sha256: string; file?: string };
  /** Stage name → cache key, from the build's result.json. */
  stages: Record<string, string>;
  /** Flavor → kernel version (uname -r) and kernel package. */
  kernels: Record<string, { version: string; kpackage: string }>;
  published: string;
}

export interface StreamState {
  /** Unreferenced file (relative path) → when it was first seen unreferenced (ISO 8601). */
  orphans: Record<string, string>;
  /** `<release>/<arch>/<version>` → what it was built from. */
  builds: Record<string, BuildRecord>;
  /** Top-level folders Kiln has put items in: the only places the orphan sweep looks. */
  roots: string[];
}

export class StreamDir {
  readonly root: string;

  constructor(root: string) {
    this.root = path.resolve(root);
  }

  abs(rel: string): string {
    return path.join(this.root, rel);
  }

  /**
   * Takes the writer's lock (`.kiln/lock`, holding our pid); a lock left by a dead process is
   * taken over. Two writers at once would each write a products file missing the other's versions.
   */
  async lock(): Promise<{ release(): Promise<void> }> {
    await mkdir(this.abs(".kiln"), { recursive: true });
    const file = this.abs(".kiln/lock");
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const fh = await open(file, "wx");
        await fh.writeFile(String(process.pid));
        await fh.close();
        return { release: () => rm(file, { force: true }) };
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
        const pid = Number((await readFile(file, "utf8").catch(() => "")).trim());
        if (pid > 0 && pid !== process.pid && isProcessAlive(pid)) {
          throw new KilnError("INPUT_INVALID", `${this.root}: another kiln (pid ${pid}) is writing this stream; wait for it, or remove ${file} if it is gone`);
        }
        await rm(file, { force: true });
      }
    }
    throw new KilnError("INPUT_INVALID", `${this.root}: cannot take the lock ${file}`);
  }

  async readProducts(contentId: string): Promise<ProductsFile | undefined> {
    const text = await readFile(this.abs(productsPath(contentId)), "utf8").catch((e: NodeJS.ErrnoException) => {
      if (e.code === "ENOENT") return undefined;
      throw e;
    });
    if (text === undefined) return undefined;
    try {
      return JSON.parse(text) as ProductsFile;
    } catch (e) {
      throw new KilnError("INPUT_INVALID", `${this.abs(productsPath(contentId))}: not JSON (${(e as Error).message}); restore it or remove it`);
    }
  }

  /** Every products file in streams/v1 (the files index.json lists). */
  async allProducts(): Promise<ProductsFile[]> {
    const names = (await readdir(this.abs(STREAMS_DIR)).catch(() => [] as string[])).filter((n) => n.endsWith(".json") && n !== "index.json").sort();
    const out: ProductsFile[] = [];
    for (const n of names) {
      const f = JSON.parse(await readFile(this.abs(`${STREAMS_DIR}/${n}`), "utf8")) as ProductsFile;
      if (f.format === "products:1.0" && typeof f.content_id === "string") out.push(f);
    }
    return out;
  }

  async writeText(rel: string, text: string): Promise<void> {
    const file = this.abs(rel);
    await mkdir(path.dirname(file), { recursive: true });
    const tmp = `${file}.tmp-${process.pid}`;
    await writeFile(tmp, text);
    await rename(tmp, file);
  }

  async writeProducts(f: ProductsFile): Promise<string> {
    const rel = productsPath(f.content_id);
    await this.writeText(rel, dumpJson(f));
    return rel;
  }

  /** Regenerates index.json from the products files on disk. */
  async writeIndex(now: Date): Promise<{ rel: string; index: IndexFile }> {
    const index = buildIndex(await this.allProducts(), streamTimestamp(now));
    const rel = `${STREAMS_DIR}/index.json`;
    await this.writeText(rel, dumpJson(index));
    return { rel, index };
  }

  async readState(): Promise<StreamState> {
    try {
      const s = JSON.parse(await readFile(this.abs(".kiln/state.json"), "utf8")) as Partial<StreamState>;
      return { orphans: s.orphans ?? {}, builds: s.builds ?? {}, roots: s.roots ?? [] };
    } catch {
      return { orphans: {}, builds: {}, roots: [] };
    }
  }

  async writeState(s: StreamState): Promise<void> {
    await this.writeText(".kiln/state.json", JSON.stringify(s, null, 1) + "\n");
  }
}

/** An empty products file for a content id. */
export function emptyProducts(contentId: string, now: Date): ProductsFile {
  return { content_id: contentId, datatype: "image-ids", format: "products:1.0", updated: streamTimestamp(now), products: {} };
}
