/**
 * Renders engine events for a terminal: one line per stage with its time and a cached marker; on
 * a TTY, under them, a status block with a line per running stage and boot (time, progress bar),
 * redrawn in place; the full log with -v; JSON lines with --json. Stages run side by side, so
 * the block is as tall as what runs now.
 */
import type { BuildEvent } from "../engine/events.js";

export interface RenderOptions {
  json: boolean;
  verbose: boolean;
  stream: NodeJS.WriteStream;
}

export function createRenderer(o: RenderOptions): { emit: (e: BuildEvent) => void; stop: () => void } {
  if (o.json) {
    return {
      emit: (e) => {
        if (e.type === "log" && !o.verbose) return;
        o.stream.write(JSON.stringify(e) + "\n");
      },
      stop: () => {},
    };
  }
  const tty = o.stream.isTTY === true;
  /** What runs now, in start order: the status block under the finished lines (TTY only). */
  const running = new Map<string, { started: number; fraction?: number }>();
  let drawn = 0; // lines of the status block on screen, the cursor below them
  let timer: NodeJS.Timeout | undefined;
  const width = 22;

  const clearLive = () => {
    if (!tty || drawn === 0) return;
    o.stream.write(`\x1b[${drawn}A\r\x1b[J`); // up to the block's first line, clear to the end
    drawn = 0;
  };
  const drawLive = () => {
    if (!tty) return;
    clearLive();
    // A wrapped line would throw the cursor arithmetic off: cut each line to the terminal.
    const cols = Math.max(20, (o.stream.columns ?? 80) - 1);
    for (const [name, r] of running) {
      const secs = ((Date.now() - r.started) / 1000).toFixed(0);
      let bar = "";
      if (r.fraction !== undefined) {
        const n = Math.round(r.fraction * 20);
        bar = ` [${"#".repeat(n)}${".".repeat(20 - n)}] ${Math.round(r.fraction * 100)}%`;
      }
      o.stream.write(`  … ${name.padEnd(width)} ${secs} s${bar}`.slice(0, cols) + "\n");
      drawn++;
    }
  };
  const line = (text: string) => {
    clearLive();
    o.stream.write(text + "\n");
    drawLive();
  };
  const begin = (name: string, plain: string) => {
    running.set(name, { started: Date.now() });
    if (!tty) line(plain);
    if (tty) timer ??= setInterval(drawLive, 500);
    drawLive();
  };

  return {
    emit(e) {
      switch (e.type) {
        case "plan":
          line(`kiln: building ${e.recipe} (${e.stages.length} stages, ${e.stages.filter((s) => s.cached).length} cached)`);
          break;
        case "stage-start":
          if (e.cached) break;
          begin(e.name, `  … ${e.name.padEnd(width)} ${e.summary}`);
          break;
        case "progress": {
          const r = running.get(e.name);
          if (r) r.fraction = e.fraction;
          break;
        }
        case "log":
          if (o.verbose) line(`    ${e.name}: ${e.line}`);
          break;
        case "stage-end":
          running.delete(e.name);
          line(`  ${e.cached ? "●" : "✓"} ${e.name.padEnd(width)} ${e.cached ? "cached" : `${e.seconds.toFixed(1)} s`}`);
          break;
        case "boot-start": {
          const what = `boot ${e.flavor}${e.target !== "pxe" ? ` ${e.target}` : ""}`;
          begin(what, `  … ${what.padEnd(width)}`);
          break;
        }
        case "boot":
          // Listed with its result at "done"; here it only leaves the status block.
          running.delete(`boot ${e.flavor}${e.target !== "pxe" ? ` ${e.target}` : ""}`);
          drawLive();
          break;
        case "note":
          line(`  ${e.message}`);
          break;
        case "done": {
          const v = e.result.verify;
          for (const r of v) {
            const what = `${r.flavor}${r.target && r.target !== "pxe" ? ` ${r.target}` : ""}`;
            const how = r.cached ? "cached (these bytes booted before)" : r.ok ? `booted in ${r.seconds.toFixed(1)} s` : `failed: ${r.reason ?? ""}`;
            line(`  ${r.cached ? "●" : r.ok ? "✓" : "✗"} boot ${what.padEnd(width - 5)} ${how} (${r.log})`);
          }
          line(`kiln: ${e.result.artifacts.length} artifacts in ${e.out} (${e.result.kiln.seconds.toFixed(1)} s)`);
          break;
        }
      }
    },
    stop() {
      if (timer) clearInterval(timer);
      clearLive();
    },
  };
}
