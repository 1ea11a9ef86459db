/**
 * A job's log: lines the worker writes (its own steps and the engine's events), kept in the
 * catalog so the API on another machine can serve and stream them (GET /v3/jobs/{id}/log).
 * Lines are batched: one INSERT every FLUSH_MS or FLUSH_BYTES, whichever comes first, so a chatty
 * apt run costs a few writes a second.
 *
 * While the catalog is unreachable (a PostgreSQL restart, a network cut) the lines stay here and
 * are written, in order, once it answers again: retried with backoff up to RETRY_MAX_MS apart.
 * At most KEEP_BYTES wait; past that the oldest go, and the log says how much was lost.
 */
import type { Catalog } from "../catalog/catalog.js";
import type { BuildEvent } from "../engine/events.js";

const FLUSH_MS = 500;
const FLUSH_BYTES = 64 * 1024;
const RETRY_MIN_MS = 1_000;
const RETRY_MAX_MS = 15_000;
const KEEP_BYTES = 8 * 1024 * 1024;

export class JobLog {
  /** Lines not yet stored, in order; a write sends a prefix of it and cuts that prefix when stored. */
  private unsent = "";
  private lost = 0;
  private timer: NodeJS.Timeout | undefined;
  private retryMs = 0;
  private writing: Promise<boolean> = Promise.resolve(true);

  constructor(
    private readonly catalog: Pick<Catalog, "appendLog">,
    readonly jobId: string,
    opts: { onEvent?: (e: BuildEvent) => void; keepBytes?: number; retryMinMs?: number; retryMaxMs?: number } = {},
  ) {
    this.onEvent = opts.onEvent;
    this.limits = { keepBytes: opts.keepBytes ?? KEEP_BYTES, retryMinMs: opts.retryMinMs ?? RETRY_MIN_MS, retryMaxMs: opts.retryMaxMs ?? RETRY_MAX_MS };
  }
  /** Sees every engine event too (the worker's metrics). */
  private readonly onEvent?: (e: BuildEvent) => void;
  private readonly limits: { keepBytes: number; retryMinMs: number; retryMaxMs: number };

  /** One line, stamped with the time. */
  line(text: string): void {
    this.unsent += `${new Date().toISOString().slice(11, 19)} ${text}\n`;
    if (this.unsent.length > this.limits.keepBytes) this.dropOldest();
    if (this.retryMs > 0) return; // the catalog is away: the retry timer writes everything
    if (this.unsent.length >= FLUSH_BYTES) void this.flush();
    else this.timer ??= setTimeout(() => void this.flush(), FLUSH_MS);
  }

  /** Tries once to write what is waiting; resolves true when every line so far is stored. */
  flush(): Promise<boolean> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.writing = this.writing.then(() => this.write());
    return this.writing;
  }

  /** Writes what is waiting, retrying for up to `ms`: the end of a job waits for its log. */
  async settle(ms: number): Promise<boolean> {
    const deadline = Date.now() + ms;
    while (!(await this.flush())) {
      if (Date.now() >= deadline) return false;
      const wait = Math.min(this.retryMs, deadline - Date.now());
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
    return true;
  }

  private async write(): Promise<boolean> {
    if (this.lost > 0) {
      this.unsent = `${new Date().toISOString().slice(11, 19)} … ${this.lost} bytes of this log were lost while the catalog was unreachable\n${this.unsent}`;
      this.lost = 0;
    }
    const text = this.unsent;
    if (text === "") return true;
    try {
      await this.catalog.appendLog(this.jobId, text);
    } catch {
      // Keep the lines and try again later; the job itself reports a catalog that stays away.
      this.retryMs = Math.min(Math.max(this.retryMs * 2, this.limits.retryMinMs), this.limits.retryMaxMs);
      if (this.timer) clearTimeout(this.timer);
      this.timer = setTimeout(() => void this.flush(), this.retryMs);
      this.timer.unref();
      return false;
    }
    this.unsent = this.unsent.slice(text.length);
    this.retryMs = 0;
    return this.unsent === ""; // lines that came meanwhile go with the next flush (a timer is set)
  }

  private dropOldest(): void {
    const cut = this.unsent.indexOf("\n", this.unsent.length - this.limits.keepBytes / 2);
    const drop = cut < 0 ? this.unsent.length : cut + 1;
    this.lost += drop;
    this.unsent = this.unsent.slice(drop);
  }

  /** Renders an engine event as log lines (what `kiln build -v` shows, without the live bar). */
  event(e: BuildEvent): void {
    this.onEvent?.(e);
    switch (e.type) {
      case "plan":
        this.line(`plan ${e.recipe}: ${e.stages.length} stages, ${e.stages.filter((s) => s.cached).length} cached`);
        break;
      case "stage-start":
        this.line(`── ${e.name}${e.cached ? " (cached)" : ""}: ${e.summary}`);
        break;
      case "log":
        this.line(`[${e.name}] ${e.line}`);
        break;
      case "stage-end":
        this.line(`── ${e.name}: ${e.cached ? "cached" : "built"} in ${e.seconds} s${e.key ? ` (key ${e.key.slice(0, 12)})` : ""}`);
        break;
      case "note":
        this.line(e.message);
        break;
      case "done":
        this.line(`build done in ${e.result.kiln.seconds} s`);
        break;
      case "progress":
        break;
    }
  }
}
