/**
 * Long-lived processes attached to streams: the shells and commands of a customize session and
 * the jail's init. Like exec(), every child gets its own process group (stop() and a dying CLI
 * kill everything it started) and KILN_WORK=<work dir> in its environment (the startup sweep finds
 * it after a kill -9); unlike exec(), the caller holds its stdin, stdout and stderr.
 *
 * Node has no PTY API. A PTY session runs under util-linux `script -qfec CMD /dev/null`: script
 * opens a pty pair, makes the slave the controlling terminal of `sh -c CMD`, and copies between
 * its own stdio (our pipes) and the master. CMD first sets the window size with `stty` (so the
 * shell never starts at 0x0), then execs the real command. Window changes are applied later
 * with `stty -F /proc/<pid>/fd/0`, opening the slave through the process that has it as stdin:
 * no path lookup, so it works whichever devpts instance the slave lives in.
 *
 * `pty.instance` names a devpts instance (a host path, see jail.ts) to allocate the pty from:
 * script then runs in a throwaway mount namespace where that instance is bound over /dev/pts and
 * its ptmx over /dev/ptmx. The jail binds the same instance at its /dev/pts, so the shell's
 * terminal exists inside the jail too (`tty` prints /dev/pts/0, not "not a tty").
 */
import { spawn } from "node:child_process";
import { readdir, readFile } from "node:fs/promises";
import { constants } from "node:os";
import type { Readable, Writable } from "node:stream";
import { exec, formatArgv, trackProcessGroup, type LogSink } from "./exec.js";

export interface PtyRequest {
  rows: number;
  cols: number;
  /** TERM for the session, from the client's pty request. */
  term: string;
  /** devpts instance (host path) to allocate the pty from; the host's /dev/pts when absent. */
  instance?: string;
}

export interface SessionProcessOptions {
  /** The complete environment (nothing is inherited from Kiln's). */
  env: Record<string, string>;
  workDir: string;
  log: LogSink;
  pty?: PtyRequest;
  cwd?: string;
  /** What the log shows instead of the full argv (which may carry whole programs). */
  logAs?: string;
}

export interface SessionProcess {
  readonly pid: number;
  readonly stdin: Writable;
  readonly stdout: Readable;
  readonly stderr: Readable;
  /** The exit code (128+N for signal N), once the process has exited and its output is drained. */
  readonly exited: Promise<number>;
  /** Applies a window change to the PTY (no-op without one). */
  resize(rows: number, cols: number): Promise<void>;
  /** Sends a signal to the whole process group. */
  signal(sig: NodeJS.Signals): void;
  /**
   * SIGTERM to the group, SIGKILL after `graceMs`; resolves once the process has exited (a
   * child that left the group may still hold its output open: see killProcessesWithEnv).
   */
  stop(graceMs?: number): Promise<void>;
}

const STOP_GRACE_MS = 2000;

export function spawnSessionProcess(argv: string[], opts: SessionProcessOptions): SessionProcess {
  if (argv.length === 0) throw new Error("spawnSessionProcess: empty argv");
  const full = opts.pty ? withPty(argv, opts.pty) : argv;
  const env: Record<string, string> = { ...opts.env, KILN_WORK: opts.workDir };
  if (opts.pty) {
    env.TERM = opts.pty.term || "xterm";
    // script runs `$SHELL -c CMD` on the host side: make that the host's sh, and give the
    // session its own SHELL back inside CMD (see withPty).
    env.KILN_SESSION_SHELL = opts.env.SHELL ?? "/bin/sh";
    env.SHELL = "/bin/sh";
  }
  opts.log.line(`$ ${opts.logAs ?? formatArgv(argv)}${opts.pty ? ` (pty ${opts.pty.cols}x${opts.pty.rows})` : ""}`);
  const child = spawn(full[0]!, full.slice(1), { env, cwd: opts.cwd, detached: true, stdio: ["pipe", "pipe", "pipe"] });
  const pgid = child.pid;
  const untrack = pgid === undefined ? () => false : trackProcessGroup(pgid);
  child.stdin!.on("error", () => {}); // the process may exit before reading everything the client sent

  const exited = new Promise<number>((resolve) => {
    child.on("error", (e) => {
      opts.log.line(`${argv[0]}: ${e.message}`);
      untrack();
      resolve(127);
    });
    child.on("close", (code, sig) => {
      untrack();
      resolve(code ?? 128 + (sig ? (constants.signals[sig] ?? 0) : 0));
    });
  });
  // The process itself has exited (output may still be held open by something it started).
  let done = false;
  const gone = new Promise<void>((resolve) => {
    child.on("exit", () => resolve());
    child.on("error", () => resolve());
  });
  void gone.then(() => (done = true));

  const signal = (sig: NodeJS.Signals) => {
    if (pgid === undefined || done) return;
    try {
      process.kill(-pgid, sig);
    } catch {
      // the group is gone
    }
  };

  let slaveHolder: number | undefined;
  return {
    pid: pgid ?? -1,
    stdin: child.stdin!,
    stdout: child.stdout!,
    stderr: child.stderr!,
    exited,
    signal,
    async resize(rows, cols) {
      if (!opts.pty || pgid === undefined || done) return;
      // script's child (`sh -c CMD`, which exec'd into the command) has the pty slave as stdin.
      slaveHolder ??= await childOf(pgid);
      if (slaveHolder === undefined) return;
      // Not logged: a terminal being resized sends dozens of these.
      await exec(["stty", "-F", `/proc/${slaveHolder}/fd/0`, "rows", String(rows), "cols", String(cols)]).catch((e: Error) =>
        opts.log.line(`window change ignored: ${e.message}`),
      );
    },
    async stop(graceMs = STOP_GRACE_MS) {
      if (done) return;
      signal("SIGTERM");
      const timer = setTimeout(() => signal("SIGKILL"), graceMs);
      try {
        await gone;
      } finally {
        clearTimeout(timer);
      }
    },
  };
}

/** argv wrapped so it runs on a fresh PTY (see the header). */
function withPty(argv: string[], pty: PtyRequest): string[] {
  const rows = Math.max(1, Math.min(Math.floor(pty.rows) || 24, 1000));
  const cols = Math.max(1, Math.min(Math.floor(pty.cols) || 80, 1000));
  const cmd = `stty rows ${rows} cols ${cols} 2>/dev/null; SHELL=$KILN_SESSION_SHELL; unset KILN_SESSION_SHELL; export SHELL; exec ${formatArgv(argv)}`;
  const script = ["script", "-qfec", cmd, "/dev/null"];
  if (!pty.instance) return script;
  // prettier-ignore
  return ["unshare", "--mount", "--propagation", "private", "--",
          "/bin/sh", "-euc", 'mount --bind "$1" /dev/pts; mount --bind "$1/ptmx" /dev/ptmx; shift; exec "$@"',
          "kiln-pty", pty.instance, ...script];
}

/** The first child of `pid`, found by scanning the PPid of every process (CONFIG_PROC_CHILDREN is not always on). */
async function childOf(pid: number): Promise<number | undefined> {
  for (const e of await readdir("/proc")) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = await readFile(`/proc/${e}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === pid) return Number(e);
    } catch {
      // gone
    }
  }
  return undefined;
}
