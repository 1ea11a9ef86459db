/**
 * A job's log: lines the worker writes (its own steps and the engine's events), kept in the
 * catalog so the API on another machine can serve and stream them (GET /v3/jobs/{id}/log).
 * Lines are batched: one INSERT every FLUSH_MS or FLUSH_BYTES, whichever comes first, so a chatty
 * apt run costs a few writes a second.
 */
import type { Catalog } from "../catalog/catalog.js";
import type { BuildEvent } from "../engine/events.js";

const FLUSH_MS = 500;
const FLUSH_BYTES = 64 * 1024;

export class JobLog {
  private buf: string[] = [];
  private bytes = 0;
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> = Promise.resolve();

  constructor(
    private readonly catalog: Catalog,
    readonly jobId: string,
    /** Sees every engine event too (the worker's metrics). */
    private readonly onEvent?: (e: BuildEvent) => void,
  ) {}

  /** One line, stamped with the time. */
  line(text: string): void {
    const l = `${new Date().toISOString().slice(11, 19)} ${text}\n`;
    this.buf.push(l);
    this.bytes += l.length;
    if (this.bytes >= FLUSH_BYTES) void this.flush();
    else this.timer ??= setTimeout(() => void this.flush(), FLUSH_MS);
  }

  /** Writes what is buffered; resolves when every line so far is stored. */
  flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const text = this.buf.join("");
    this.buf = [];
    this.bytes = 0;
    this.writing = this.writing.then(() => this.catalog.appendLog(this.jobId, text)).catch(() => {
      // The catalog is unreachable: the job's status write will report it; log lines are lost.
    });
    return this.writing;
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
