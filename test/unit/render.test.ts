/**
 * The CLI's build output (src/cli/render.ts): on a TTY, a status block with every running stage
 * and boot, redrawn in place under the finished lines; plain lines without a TTY. The TTY output
 * is played on a small screen emulator (the few escape codes the renderer uses), so the tests
 * check what a user sees, not the bytes.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { createRenderer } from "../../src/cli/render.js";
import type { BuildEvent } from "../../src/engine/events.js";
import type { BuildResult } from "../../src/artifacts/result.js";

const ESC = "\x1b";

/** Applies \n, \r, ESC[2K, ESC[nA and ESC[J to a grid of lines, as a terminal does. */
class Screen {
  lines: string[] = [""];
  row = 0;
  col = 0;
  write(text: string): void {
    for (let i = 0; i < text.length; i++) {
      const c = text[i]!;
      if (c === "\x1b") {
        const m = new RegExp(`^${ESC}\\[(\\d*)([A-Za-z])`).exec(text.slice(i));
        if (!m) throw new Error(`unknown escape at ${JSON.stringify(text.slice(i, i + 8))}`);
        i += m[0].length - 1;
        const n = Number(m[1] || "1");
        if (m[2] === "A") this.row = Math.max(0, this.row - n);
        else if (m[2] === "J") this.lines = [...this.lines.slice(0, this.row), this.lines[this.row]!.slice(0, this.col)];
        else if (m[2] === "K") this.lines[this.row] = "";
        else throw new Error(`unexpected escape ${m[0]}`);
      } else if (c === "\n") {
        this.row++;
        this.col = 0;
        while (this.lines.length <= this.row) this.lines.push("");
      } else if (c === "\r") this.col = 0;
      else {
        const l = this.lines[this.row]!.padEnd(this.col);
        this.lines[this.row] = l.slice(0, this.col) + c + l.slice(this.col + 1);
        this.col++;
      }
    }
  }
  /** The screen's lines, without the empty one the cursor sits on. */
  get text(): string[] {
    return this.lines.filter((l, i) => l !== "" || i < this.lines.length - 1);
  }
}

function terminal(isTTY: boolean) {
  const screen = new Screen();
  let raw = "";
  const stream = { isTTY, columns: 100, write: (s: string) => ((raw += s), screen.write(s), true) } as unknown as NodeJS.WriteStream;
  return { stream, screen, raw: () => raw };
}

const at = "2026-12-03T14:00:00.000Z";
const start = (name: string, running: string[] = []): BuildEvent => ({ type: "stage-start", name, cached: false, summary: `doing ${name}`, at, running });
const end = (name: string, seconds: number): BuildEvent => ({ type: "stage-end", name, key: "k", cached: false, seconds, at, ranWith: [] });

test("on a TTY every running stage and boot has a line in a block redrawn in place; finished ones go above it", () => {
  const t = terminal(true);
  const r = createRenderer({ json: false, verbose: false, stream: t.stream });
  try {
    r.emit({ type: "plan", recipe: "server", stages: [], jobs: 2 });
    r.emit(start("kernel:generic"));
    r.emit(start("kernel:cloud", ["kernel:generic"]));
    r.emit(start("squashfs", ["kernel:generic", "kernel:cloud"]));
    r.emit({ type: "progress", name: "squashfs", fraction: 0.5 });
    r.emit({ type: "note", message: "waiting for kiln cache prune to finish" });
    assert.deepEqual(t.screen.text.map((l) => l.replace(/\s+/g, " ").trim()), [
      "kiln: building server (0 stages, 0 cached)",
      "waiting for kiln cache prune to finish",
      "… kernel:generic 0 s",
      "… kernel:cloud 0 s",
      "… squashfs 0 s [##########..........] 50%",
    ]);
    r.emit(end("kernel:cloud", 12.3));
    assert.deepEqual(t.screen.text.slice(2).map((l) => l.replace(/\s+/g, " ").trim()), ["✓ kernel:cloud 12.3 s", "… kernel:generic 0 s", "… squashfs 0 s [##########..........] 50%"]);
    r.emit(end("squashfs", 2));
    r.emit(end("kernel:generic", 30));
    r.emit({ type: "boot-start", flavor: "generic", target: "pxe", at, running: [] });
    r.emit({ type: "boot-start", flavor: "generic", target: "qcow2-bios", at, running: ["boot:generic:pxe"] });
    assert.deepEqual(t.screen.text.slice(-2).map((l) => l.replace(/\s+/g, " ").trim()), ["… boot generic 0 s", "… boot generic qcow2-bios 0 s"]);
    r.emit({ type: "boot", flavor: "generic", target: "pxe", ok: true, cached: false, seconds: 40, at, ranWith: ["boot:generic:qcow2-bios"] });
    assert.deepEqual(t.screen.text.slice(-1).map((l) => l.replace(/\s+/g, " ").trim()), ["… boot generic qcow2-bios 0 s"]);
  } finally {
    r.stop();
  }
  // Stopped: the block is gone, the finished lines stay.
  assert.deepEqual(t.screen.text.map((l) => l.replace(/\s+/g, " ").trim()), [
    "kiln: building server (0 stages, 0 cached)",
    "waiting for kiln cache prune to finish",
    "✓ kernel:cloud 12.3 s",
    "✓ squashfs 2.0 s",
    "✓ kernel:generic 30.0 s",
  ]);
});

test("without a TTY: plain lines, one when a stage or boot starts and one when a stage ends, no escape codes", () => {
  const t = terminal(false);
  const r = createRenderer({ json: false, verbose: false, stream: t.stream });
  r.emit(start("kernel:generic"));
  r.emit(start("kernel:cloud", ["kernel:generic"]));
  r.emit(end("kernel:cloud", 1));
  r.emit(end("kernel:generic", 2));
  r.emit({ type: "boot-start", flavor: "generic", target: "pxe", at, running: [] });
  r.stop();
  assert.ok(!t.raw().includes(ESC), "no escape codes");
  assert.deepEqual(t.raw().split("\n").map((l) => l.replace(/\s+/g, " ").trim()), [
    "… kernel:generic doing kernel:generic",
    "… kernel:cloud doing kernel:cloud",
    "✓ kernel:cloud 1.0 s",
    "✓ kernel:generic 2.0 s",
    "… boot generic",
    "",
  ]);
});

test("--json: one JSON line per event with what ran together", () => {
  const t = terminal(true);
  const r = createRenderer({ json: true, verbose: false, stream: t.stream });
  r.emit(start("kernel:cloud", ["kernel:generic"]));
  r.emit({ type: "stage-end", name: "kernel:cloud", key: "k", cached: false, seconds: 1, at, ranWith: ["kernel:generic", "squashfs"] });
  r.emit({ type: "done", result: { verify: [], artifacts: [], kiln: { seconds: 1 } } as unknown as BuildResult, out: "out" });
  r.stop();
  const lines = t.raw().trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.deepEqual(lines[0]!.running, ["kernel:generic"]);
  assert.equal(lines[0]!.at, at);
  assert.deepEqual(lines[1]!.ranWith, ["kernel:generic", "squashfs"]);
});
