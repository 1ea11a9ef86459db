/**
 * The JSON the catalog serves, kept in memory by kind (catalog.ts says when it may be read).
 */
import type { RecordKind } from "./records.js";

/**
 * Served JSON by kind: all the records of a kind once it was loaded (fill), its lists, and
 * records read one by one. A write evicts the records it touched and the kind's lists; drop()
 * forgets a kind. A read takes gen() before it queries and set() keeps its result only if no
 * write of the kind happened meanwhile.
 */
export class JsonCache {
  private readonly entries = new Map<string, Map<string, string>>();
  private readonly generation = new Map<string, number>();
  /** The generation at which a kind was filled: it is complete while no write happened since. */
  private readonly complete = new Map<string, number>();
  /** Kinds filled since their last drop(): the records kept stay valid across evictions. */
  private readonly filledKinds = new Set<string>();
  private static readonly MAX = 50_000;

  /** `kinds`: every kind there is (dropAll() drops each, loaded or not). */
  constructor(private readonly kinds: readonly RecordKind[]) {}

  get(kind: RecordKind, key: string): string | undefined {
    return this.entries.get(kind)?.get(key);
  }

  /** Whether every record of the kind is in memory (fill() and no write since). */
  loaded(kind: RecordKind): boolean {
    return this.complete.get(kind) === this.gen(kind);
  }

  /** Whether the kind was filled since it was last dropped. */
  filled(kind: RecordKind): boolean {
    return this.filledKinds.has(kind);
  }

  fill(kind: RecordKind, entries: Array<[string, string]>, gen: number): void {
    if (gen !== this.gen(kind)) return;
    const m = this.entries.get(kind) ?? new Map<string, string>();
    for (const [k, v] of entries) m.set(k, v);
    this.entries.set(kind, m);
    this.complete.set(kind, gen);
    this.filledKinds.add(kind);
  }

  /** Taken before a read; set() keeps its result only if no write happened meanwhile. */
  gen(kind: RecordKind): number {
    return this.generation.get(kind) ?? 0;
  }

  set(kind: RecordKind, key: string, value: string, gen: number): void {
    if (gen !== this.gen(kind)) return;
    let m = this.entries.get(kind);
    if (!m) this.entries.set(kind, (m = new Map()));
    if (m.size >= JsonCache.MAX) m.clear();
    m.set(key, value);
  }

  /** Forgets one record (live or deleted) and the kind's lists. */
  evict(kind: RecordKind, id: string): void {
    this.generation.set(kind, this.gen(kind) + 1);
    const m = this.entries.get(kind);
    if (!m) return;
    const lower = id.toLowerCase();
    for (const key of [`false:${lower}`, `true:${lower}`, "list:false", "list:true"]) m.delete(key);
  }

  drop(kind: RecordKind): void {
    this.generation.set(kind, this.gen(kind) + 1);
    this.entries.delete(kind);
    this.filledKinds.delete(kind);
  }

  dropAll(): void {
    for (const kind of this.kinds) this.drop(kind);
  }
}
