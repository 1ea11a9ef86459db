/**
 * Runs host commands. Every child:
 *  - gets its own process group, so cancelling kills it and everything it started (apt, dpkg, qemu);
 *  - carries KILN_WORK=<work dir> in its environment, which the startup sweep uses to find the
 *    processes of a build that died by SIGKILL (see sweep.ts);
 *  - has its argv and output written to the stage log, and the last lines kept for the error message.
 */
import { spawn } from "node:child_process";
import { StringDecoder } from "node:string_decoder";
import { KilnError, cancelled } from "../errors.js";

export interface LogSink {
  /** One line of a stage's log, without the trailing newline. */
  line(text: string): void;
}

export const nullLog: LogSink = { line: () => {} };

export interface ExecOptions {
  cwd?: string;
  env?: Record<string, string | undefined>;
  input?: string | Buffer;
  log?: LogSink;
  signal?: AbortSignal;
  /** Work dir of the build that owns this process (marker for the sweep). */
  workDir?: string;
  /** Collect stdout and return it (also logged unless quietStdout). */
  captureStdout?: boolean;
  quietStdout?: boolean;
  /** Exit codes that count as success. */
  okCodes?: number[];
  /** How this command is described in errors, e.g. `(chroot)`. */
  where?: string;
  /** The command as logs and errors show it, when argv is a wrapper around it (the build jail's). */
  shownArgv?: string[];
  /**
   * Start from an empty environment, not Kiln's: for what runs a recipe's code, which must not
   * see the worker's store credentials or database URL. Only `env` (and KILN_WORK) is passed.
   */
  cleanEnv?: boolean;
  /** Sees every output line first; returning true consumes it (a progress bar redraw, not worth logging). */
  onLine?: (line: string) => boolean | void;
}

export interface ExecResult {
  code: number;
  stdout: string;
}

const TAIL_LINES = 12;
const KILL_GRACE_MS = 5000;

/** Process groups alive right now, so a dying CLI can kill them synchronously. */
const liveGroups = new Set<number>();

/**
 * Registers the process group of a long-lived child spawned elsewhere in host/ (a customize
 * session's shell, the jail's init), so killAllChildren() covers it too. Returns the unregister.
 */
export function trackProcessGroup(pgid: number): () => void {
  liveGroups.add(pgid);
  return () => liveGroups.delete(pgid);
}

export function killAllChildren(): void {
  for (const pgid of liveGroups) {
    try {
      process.kill(-pgid, "SIGKILL");
    } catch {
      // already gone
    }
  }
}

export async function exec(argv: string[], opts: ExecOptions = {}): Promise<ExecResult> {
  if (argv.length === 0) throw new Error("exec: empty argv");
  const log = opts.log ?? nullLog;
  if (opts.signal?.aborted) throw cancelled(opts.signal.reason);
  const shown = formatArgv(opts.shownArgv ?? argv);
  log.line(`$ ${shown}${opts.where ? ` ${opts.where}` : ""}`);

  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries({ ...(opts.cleanEnv ? {} : process.env), ...opts.env })) if (v !== undefined) env[k] = v;
  if (opts.workDir) env.KILN_WORK = opts.workDir;

  const child = spawn(argv[0]!, argv.slice(1), {
    cwd: opts.cwd,
    env,
    detached: true,
    stdio: [opts.input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
  });
  const pgid = child.pid;
  if (pgid !== undefined) liveGroups.add(pgid);

  const tail: string[] = [];
  const stdoutChunks: Buffer[] = [];
  const onLine = (text: string) => {
    if (opts.onLine?.(text) === true) return;
    log.line(text);
    tail.push(text);
    if (tail.length > TAIL_LINES) tail.shift();
  };
  pipeLines(child.stdout!, (l) => {
    if (!opts.quietStdout) onLine(l);
  }, opts.captureStdout ? stdoutChunks : undefined);
  pipeLines(child.stderr!, onLine);
  if (opts.input !== undefined) {
    child.stdin!.on("error", () => {}); // the child may exit before reading all input
    child.stdin!.end(opts.input);
  }

  let killTimer: NodeJS.Timeout | undefined;
  const onAbort = () => {
    if (pgid === undefined) return;
    signalGroup(pgid, "SIGTERM");
    killTimer = setTimeout(() => signalGroup(pgid, "SIGKILL"), KILL_GRACE_MS);
  };
  opts.signal?.addEventListener("abort", onAbort, { once: true });

  try {
    const code = await new Promise<number>((resolve, reject) => {
      child.on("error", reject);
      child.on("close", (c, sig) => resolve(c ?? (sig ? 128 + signalNumber(sig) : 1)));
    });
    if (opts.signal?.aborted) throw cancelled(opts.signal.reason);
    const ok = opts.okCodes ?? [0];
    if (!ok.includes(code)) {
      const summary = tail.filter((l) => l.trim() !== "").slice(-4).join(" · ");
      throw new KilnError("STAGE_FAILED", `"${shown}"${opts.where ? ` ${opts.where}` : ""} exited with code ${code}${summary ? ` · ${summary}` : ""}`);
    }
    return { code, stdout: Buffer.concat(stdoutChunks).toString("utf8") };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT" && !(e instanceof KilnError)) {
      throw new KilnError("TOOL_MISSING", `${argv[0]} is not installed on this host`, {
        hint: "run the README's setup command (it installs the host packages Kiln drives)",
      });
    }
    throw e;
  } finally {
    opts.signal?.removeEventListener("abort", onAbort);
    if (killTimer) clearTimeout(killTimer);
    if (pgid !== undefined) {
      // The leader has exited; make sure nothing it started lives on (a daemon apt started, say).
      signalGroup(pgid, "SIGKILL");
      liveGroups.delete(pgid);
    }
  }
}

/** Runs a command and returns its stdout, trimmed. For tool versions and queries. */
export async function capture(argv: string[], opts: ExecOptions = {}): Promise<string> {
  const r = await exec(argv, { ...opts, captureStdout: true, quietStdout: true });
  return r.stdout.trim();
}

/**
 * Calls onLine for each line of a child's output. A pipe cuts output anywhere, also inside a
 * multi-byte UTF-8 character: the decoder holds such a partial character until its other bytes
 * arrive, where decoding each chunk alone would turn both halves into U+FFFD.
 */
export function pipeLines(stream: NodeJS.ReadableStream, onLine: (l: string) => void, keep?: Buffer[]): void {
  const decoder = new StringDecoder("utf8");
  let pending = "";
  stream.on("data", (chunk: Buffer) => {
    keep?.push(chunk);
    pending += decoder.write(chunk);
    // apt and mksquashfs draw progress with \r: treat it as a line end so logs stay readable.
    const parts = pending.split(/\r?\n|\r/);
    pending = parts.pop() ?? "";
    for (const p of parts) onLine(p);
  });
  stream.on("end", () => {
    pending += decoder.end();
    if (pending) onLine(pending);
  });
}

function signalGroup(pgid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(-pgid, sig);
  } catch {
    // the group is gone
  }
}

function signalNumber(sig: NodeJS.Signals): number {
  const n = (
    { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGTERM: 15, SIGSEGV: 11, SIGPIPE: 13 } as Record<string, number>
  )[sig];
  return n ?? 0;
}

export function formatArgv(argv: string[]): string {
  return argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(" ");
}
