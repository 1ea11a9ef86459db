/** A stage's log: the file out/logs/<stage>.log plus a `log` event per line. */
import { createWriteStream, type WriteStream } from "node:fs";
import path from "node:path";
import type { LogSink } from "../host/exec.js";
import type { EventSink } from "./events.js";

export interface StageLog extends LogSink {
  /** Path relative to the out dir, for messages. */
  readonly relPath: string;
  close(): Promise<void>;
}

export function logFileName(stageName: string): string {
  return `${stageName.replace(/[^a-z0-9.-]/gi, "-")}.log`;
}

export function openStageLog(outDir: string, stageName: string, emit: EventSink): StageLog {
  const relPath = path.join("logs", logFileName(stageName));
  const stream: WriteStream = createWriteStream(path.join(outDir, relPath), { flags: "a" });
  return {
    relPath,
    line(text: string) {
      stream.write(text + "\n");
      emit({ type: "log", name: stageName, line: text });
    },
    close: () => new Promise<void>((resolve) => stream.end(resolve)),
  };
}
