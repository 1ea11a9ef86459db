/**
 * What the engine reports while it builds. Front ends render these: progress lines in a
 * terminal, JSON lines with --json, the job log in the service. The engine never prints.
 */
import type { BuildResult } from "../artifacts/result.js";

/*
 * Stages and boots run side by side (scheduler.ts). So that a reader of the events can tell what
 * ran together, each start carries its time (`at`, ISO 8601) and the others running at that
 * moment (`running`), each end its time and every other one that ran at some moment while it ran
 * (`ranWith`). Stages are named as in the plan, boots `boot:<flavor>:<target>`.
 */
export type BuildEvent =
  /** jobs: the --jobs cap this build runs with. */
  | { type: "plan"; recipe: string; stages: Array<{ name: string; key: string; cached: boolean }>; jobs: number }
  | { type: "stage-start"; name: string; cached: boolean; summary: string; at: string; running: string[] }
  | { type: "stage-end"; name: string; key: string; cached: boolean; seconds: number; at: string; ranWith: string[] }
  | { type: "log"; name: string; line: string }
  | { type: "progress"; name: string; fraction: number }
  | { type: "note"; message: string }
  /** A boot of the verify stage begins (or is looked up in the boot cache). */
  | { type: "boot-start"; flavor: string; target: string; at: string; running: string[] }
  /** One per boot of the verify stage, when it ends; cached: an earlier boot of the same bytes passed, none was made. */
  | { type: "boot"; flavor: string; target: string; ok: boolean; cached: boolean; seconds: number; at: string; ranWith: string[] }
  | { type: "done"; result: BuildResult; out: string };

export type EventSink = (e: BuildEvent) => void;
