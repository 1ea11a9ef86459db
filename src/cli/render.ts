/**
 * Renders engine events for a terminal: one line per stage with its time and a cached marker, a
 * live line with a progress bar while a long stage runs (TTY only), the full log with -v, and
 * JSON lines with --json.
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
  let current: { name: string; started: number; fraction?: number } | undefined;
  let timer: NodeJS.Timeout | undefined;
  const width = 22;

  const clearLive = () => {
    if (tty && current) o.stream.write("\r\x1b[2K");
  };
  const drawLive = () => {
    if (!tty || !current) return;
    const secs = ((Date.now() - current.started) / 1000).toFixed(0);
    let bar = "";
    if (current.fraction !== undefined) {
      const n = Math.round(current.fraction * 20);
      bar = ` [${"#".repeat(n)}${".".repeat(20 - n)}] ${Math.round(current.fraction * 100)}%`;
    }
    o.stream.write(`\r\x1b[2K  … ${current.name.padEnd(width)} ${secs} s${bar}`);
  };
  const line = (text: string) => {
    clearLive();
    o.stream.write(text + "\n");
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
          current = { name: e.name, started: Date.now() };
          if (!tty) line(`  … ${e.name.padEnd(width)} ${e.summary}`);
          if (tty) timer ??= setInterval(drawLive, 500);
          drawLive();
          break;
        case "progress":
          if (current?.name === e.name) current.fraction = e.fraction;
          break;
        case "log":
          if (o.verbose) line(`    ${e.name}: ${e.line}`);
          break;
        case "stage-end":
          clearLive();
          current = undefined;
          o.stream.write(`  ${e.cached ? "●" : "✓"} ${e.name.padEnd(width)} ${e.cached ? "cached" : `${e.seconds.toFixed(1)} s`}\n`);
          break;
        case "note":
          line(`  ${e.message}`);
          break;
        case "boot":
          break; // listed with the result, at "done"
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
