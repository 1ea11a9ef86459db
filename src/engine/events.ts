/**
 * What the engine reports while it builds. Front ends render these: progress lines in a
 * terminal, JSON lines with --json, the job log in the service. The engine never prints.
 */
import type { BuildResult } from "../artifacts/result.js";

export type BuildEvent =
  | { type: "plan"; recipe: string; stages: Array<{ name: string; key: string; cached: boolean }> }
  | { type: "stage-start"; name: string; cached: boolean; summary: string }
  | { type: "stage-end"; name: string; key: string; cached: boolean; seconds: number }
  | { type: "log"; name: string; line: string }
  | { type: "progress"; name: string; fraction: number }
  | { type: "note"; message: string }
  /** One per boot of the verify stage, when it ends; cached: an earlier boot of the same bytes passed, none was made. */
  | { type: "boot"; flavor: string; target: string; ok: boolean; cached: boolean; seconds: number }
  | { type: "done"; result: BuildResult; out: string };

export type EventSink = (e: BuildEvent) => void;
