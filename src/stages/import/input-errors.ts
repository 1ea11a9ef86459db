/**
 * Running a tool on a user's image and blaming the right party when it fails. When unsquashfs, tar,
 * qemu-img or mount cannot read the image, the image is at fault (INPUT_INVALID, exit 2) and the
 * message names the file and quotes the tool; when the host runs out of space it is not.
 */
import { exec, type ExecOptions, type ExecResult, type LogSink } from "../../host/exec.js";
import { KilnError } from "../../errors.js";

/** What every import step needs from its caller. */
export interface ImportContext {
  log: LogSink;
  signal?: AbortSignal;
  /** The build's work dir: scratch space for mounts and temp files, swept if the build dies. */
  workDir: string;
}

/** `base.image: <label>: <message>`, as INPUT_INVALID with a problem on `base.image`. */
export function invalidImage(label: string, message: string, cause?: unknown): KilnError {
  return new KilnError("INPUT_INVALID", `base.image: ${label}: ${message}`, {
    problems: [{ path: "base.image", message: `${label}: ${message}` }],
    cause,
  });
}

/** A log sink that also keeps the last lines a command printed, to quote them in errors. */
export class TailLog implements LogSink {
  private readonly lines: string[] = [];
  constructor(
    private readonly inner: LogSink,
    private readonly keep = 8,
  ) {}

  line(text: string): void {
    this.inner.line(text);
    if (text.startsWith("$ ")) return; // exec's echo of the argv, not the tool's words
    if (text.trim() === "") return;
    this.lines.push(text.trim());
    if (this.lines.length > this.keep) this.lines.shift();
  }

  said(n = 4): string {
    return this.lines.slice(-n).join(" · ");
  }
}

// Words that blame where the tree is written, or the host itself: the destination is full,
// read-only or lacks xattr support; no loop device; not root.
const HOST_TROUBLE = /No space left on device|Disk quota exceeded|Cannot allocate memory|Read-only file system|Operation not supported|failed to setup loop device|Permission denied/i;

/**
 * Runs a tool that reads the user's image. If it fails, throws INPUT_INVALID
 * `base.image: <label>: <doing>: <what the tool said>` — unless what it said points at the host
 * (disk full, no loop device, not root), which stays a STAGE_FAILED naming the command.
 */
export async function execOnImage(
  argv: string[],
  ctx: ImportContext,
  what: { label: string; doing: string },
  opts: Pick<ExecOptions, "env" | "captureStdout" | "quietStdout" | "okCodes"> = {},
): Promise<ExecResult> {
  const tail = new TailLog(ctx.log);
  try {
    return await exec(argv, { ...opts, log: tail, signal: ctx.signal, workDir: ctx.workDir });
  } catch (e) {
    throw blameImage(e, tail, what);
  }
}

/** Turns a failed command's error into the right KilnError (see execOnImage). */
export function blameImage(e: unknown, tail: TailLog, what: { label: string; doing: string }): unknown {
  if (!(e instanceof KilnError) || e.code !== "STAGE_FAILED") return e; // cancelled, tool missing, a bug
  const said = tail.said();
  if (HOST_TROUBLE.test(said)) return e;
  return invalidImage(what.label, `${what.doing}${said ? `: ${said}` : ""}`, e);
}
