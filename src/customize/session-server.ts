/**
 * The SSH server of one customize or debug session (docs/architecture.md#customize-and-debug-sessions, IMS `ssh_containers`).
 *
 * startSessionServer() prepares the target (a jail in the image root, or a jail in a build
 * environment with the image at /mnt/image), listens, and returns a SessionServer. Contract:
 *  - only `root` logging in with one of `authorizedKeys` gets in, and only after its signature
 *    verifies; password, keyboard-interactive, host-based and other keys are refused and each
 *    refusal is an `auth-refused` event with the offered key's fingerprint;
 *  - a session offers a shell (with or without a PTY), exec with the command's exit status, and
 *    SFTP (scp and sftp) confined to the image. No port forwarding, agent or X11;
 *  - waitForMarker() settles with "complete" or "failed" when the operator creates the marker
 *    (/tmp/<marker> in the jail, /mnt/image/<marker> not jailed); it rejects if the session is
 *    closed, aborted, or the jail dies first. The sessions stay open until close();
 *  - close() (also on `signal` abort) ends every connection and every process of the session,
 *    releases every mount, and leaves nothing in the image but what the user changed.
 * The job runner: start, publish host/port, await waitForMarker(), close(), then package.
 */
import { randomBytes } from "node:crypto";
import net, { type AddressInfo, type Socket } from "node:net";
import ssh2 from "ssh2";
import type { AuthContext, ClientInfo, Connection, ServerChannel, Session } from "ssh2";
import { cancelled, KilnError } from "../errors.js";
import { formatArgv, type LogSink } from "../host/exec.js";
import { openJail, type Account } from "../host/jail.js";
import { openPlainShell, PLAIN_IMAGE_DIR } from "../host/plain-shell.js";
import type { RootFs } from "../host/root-fs.js";
import type { Releasable } from "../host/scope.js";
import { spawnSessionProcess, type PtyRequest, type SessionProcess } from "../host/session-process.js";
import { killProcessesWithEnv } from "../host/sweep.js";
import { findAuthorizedKey, fingerprint, parseAuthorizedKeys, verifySignature } from "./authorized-keys.js";
import { MARKERS, watchMarkers, type Marker } from "./markers.js";
import { serveSftp } from "./sftp-server.js";

/** How long close() waits for running commands to end by themselves (an interactive shell never does). */
const CLOSE_GRACE_MS = 2000;

export type SessionTarget =
  | { mode: "jail"; root: string; env?: Record<string, string> }
  /** `environment`: the build environment's layer trees, top first (jobs/build-env.ts). */
  | { mode: "plain"; image: string; environment: readonly string[]; env?: Record<string, string> };

export interface SessionServerOptions {
  /** Address to listen on; port 0 or absent picks a free one. */
  listen: { host: string; port?: number };
  /** Host private key (OpenSSH or PEM); an ed25519 key is generated for the session when absent. */
  hostKey?: string | Buffer;
  /** OpenSSH public key lines; the only keys accepted. */
  authorizedKeys: readonly string[];
  /** jail: a root shell inside the image root; plain: a root shell in a build environment of its own, image at /mnt/image. */
  target: SessionTarget;
  log: LogSink;
  workDir: string;
  signal?: AbortSignal;
  /** Called with every event as it happens (they are also kept in `events`). */
  onEvent?: (event: SessionEvent) => void;
  /** How often the markers are polled (default 250 ms). */
  markerIntervalMs?: number;
  /** Limits on connections that have not logged in yet (defaults: UNAUTHENTICATED). */
  unauthenticated?: Partial<UnauthenticatedLimits>;
}

/**
 * What a connection that has not logged in may hold (sshd's LoginGraceTime and MaxStartups /
 * PerSourceMaxStartups). Counted from the TCP accept, before a byte of SSH: a client that never
 * sends its version line is a connection like any other.
 */
export interface UnauthenticatedLimits {
  /** A connection not logged in after this long is closed (the service's --ssh-login-grace). */
  graceMs: number;
  /** Connections of the session not logged in yet; one more is closed at once. */
  perSession: number;
  /** The same, per source address. */
  perAddress: number;
}

export const UNAUTHENTICATED: UnauthenticatedLimits = { graceMs: 30_000, perSession: 10, perAddress: 3 };

export type SessionStatus = "pending" | "established" | "complete";

export type SessionEvent =
  | { type: "connect"; at: string; remote: string }
  | { type: "auth-ok"; at: string; remote: string; user: string; fingerprint: string; comment: string }
  | { type: "auth-refused"; at: string; remote: string; user: string; method: string; fingerprint?: string; reason: string }
  | { type: "disconnect"; at: string; remote: string }
  /** A connection closed by a limit before it logged in (grace time, caps, too many refusals). */
  | { type: "dropped"; at: string; remote: string; reason: string }
  | { type: "marker"; at: string; marker: Marker };

export interface SessionServer extends Releasable, AsyncDisposable {
  readonly host: string;
  readonly port: number;
  /** `SHA256:…` of the host key, for the operator to check on first connect. */
  readonly hostKeyFingerprint: string;
  /** The host public key as a known_hosts key (`ssh-ed25519 AAAA…`). */
  readonly hostPublicKey: string;
  /** pending: nobody logged in yet; established: someone did; complete: a marker was seen. */
  readonly status: SessionStatus;
  readonly events: readonly SessionEvent[];
  waitForMarker(): Promise<Marker>;
  close(): Promise<void>;
}

/** What the session needs of a jail or a plain shell. */
interface Target extends Releasable {
  readonly files: RootFs;
  readonly account: Account;
  readonly ptyInstance?: string;
  command(command: string[], cwd?: string): string[];
}

const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/** Refused authentication attempts per connection, `none` included; then it is dropped. */
export const MAX_REFUSALS = 10;
/** Client environment requests that are honoured (as Debian's sshd AcceptEnv). */
const ACCEPT_ENV = /^(LANG|LC_[A-Z]+)$/;

export async function startSessionServer(opts: SessionServerOptions): Promise<SessionServer> {
  const started = Date.now();
  const log = opts.log;
  if (opts.signal?.aborted) throw cancelled(opts.signal.reason);
  const keys = parseAuthorizedKeys(opts.authorizedKeys);
  if (keys.length === 0) throw new KilnError("INPUT_INVALID", "a customize session needs at least one public key to accept");
  const hostKey = opts.hostKey ?? generateHostKey();
  const parsedHost = ssh2.utils.parseKey(hostKey);
  const host = Array.isArray(parsedHost) ? parsedHost[0] : parsedHost;
  if (!host || host instanceof Error || !host.isPrivateKey()) throw new KilnError("INPUT_INVALID", "the session's host key is not a private key");
  const hostBlob = host.getPublicSSH();
  const sessionId = randomBytes(6).toString("hex");
  const sessionTag = `KILN_SESSION=${sessionId}`;

  let target: Target;
  let markerDir: string; // where the markers appear, as a host path
  let jailExited: Promise<number> | undefined;
  if (opts.target.mode === "jail") {
    const jail = await openJail(opts.target.root, { log, workDir: opts.workDir });
    [target, markerDir, jailExited] = [jail, `${jail.view}/tmp`, jail.exited];
  } else {
    const plain = await openPlainShell(opts.target.image, { environment: opts.target.environment, log, workDir: opts.workDir });
    [target, markerDir, jailExited] = [plain, plain.image, plain.exited];
    await removeMarkers(target.files, log, "stale");
  }
  const isJail = opts.target.mode === "jail";

  const events: SessionEvent[] = [];
  const emit = (e: DistributiveOmit<SessionEvent, "at">) => {
    const event = { ...e, at: new Date().toISOString() } as SessionEvent;
    events.push(event);
    log.line(`session: ${describe(event)}`);
    try {
      opts.onEvent?.(event);
    } catch (err) {
      log.line(`session: event listener failed: ${(err as Error).message}`);
    }
  };

  let status: SessionStatus = "pending";
  let closing = false;
  const clients = new Set<Connection>();
  const processes = new Set<SessionProcess>();
  const channels = new Set<ServerChannel>();

  // The marker, or why there will be none.
  const watch = watchMarkers(markerDir, { intervalMs: opts.markerIntervalMs });
  let settleMarker!: { resolve: (m: Marker) => void; reject: (e: unknown) => void };
  const marker = new Promise<Marker>((resolve, reject) => (settleMarker = { resolve, reject }));
  marker.catch(() => {}); // nobody may be waiting
  void watch.result.then((m) => {
    status = "complete";
    emit({ type: "marker", marker: m });
    settleMarker.resolve(m);
  });
  void jailExited?.then(() => {
    if (!closing) settleMarker.reject(new KilnError("STAGE_FAILED", "the customize jail exited before a marker was set"));
  });

  const env = (clientEnv: Record<string, string>): Record<string, string> => ({
    PATH: DEFAULT_PATH,
    HOME: target.account.home,
    USER: "root",
    LOGNAME: "root",
    SHELL: target.account.shell,
    ...clientEnv,
    ...opts.target.env,
    KILN_SESSION: sessionId,
  });

  const authenticate = (ctx: AuthContext, remote: string, refused: () => void) => {
    const refuse = (reason: string, fp?: string) => {
      emit({ type: "auth-refused", remote, user: ctx.username, method: ctx.method, ...(fp ? { fingerprint: fp } : {}), reason });
      ctx.reject(["publickey"]);
      refused();
    };
    if (ctx.method === "none") {
      // Every client asks this first; it is not logged, but it counts: a client repeating it
      // would otherwise hold the connection without ever being refused.
      ctx.reject(["publickey"]);
      return refused();
    }
    if (ctx.method !== "publickey") return refuse("only public keys are accepted");
    const fp = fingerprint(ctx.key.data);
    if (ctx.username !== "root") return refuse("only root may log in", fp);
    const key = findAuthorizedKey(keys, ctx.key.data);
    if (!key) return refuse("key not authorized for this session", fp);
    if (!ctx.signature || !ctx.blob) return ctx.accept(); // "would this key do?" — the signed attempt follows
    if (!verifySignature(key, ctx.blob, ctx.signature, ctx.hashAlgo)) return refuse("signature does not verify", fp);
    if (status === "pending") status = "established";
    emit({ type: "auth-ok", remote, user: ctx.username, fingerprint: fp, comment: key.comment });
    ctx.accept();
  };

  const run = (channel: ServerChannel, command: string[], pty: PtyRequest | undefined, clientEnv: Record<string, string>, remote: string): SessionProcess | undefined => {
    if (closing) {
      channel.close();
      return undefined;
    }
    const proc = spawnSessionProcess(target.command(command), {
      env: env(clientEnv),
      workDir: opts.workDir,
      log,
      pty,
      logAs: `${formatArgv(command)} (${opts.target.mode})`,
    });
    processes.add(proc);
    channels.add(channel);
    channel.on("close", () => channels.delete(channel));
    channel.pipe(proc.stdin);
    proc.stdout.pipe(channel, { end: false });
    proc.stderr.pipe(channel.stderr, { end: false });
    channel.on("close", () => void proc.stop());
    void proc.exited.then((code) => {
      processes.delete(proc);
      log.line(`session: ${remote}: ${command[0]} exited with ${code}`);
      try {
        channel.exit(code);
        channel.end();
      } catch {
        // the client is gone already
      }
    });
    return proc;
  };

  const openSession = (session: Session, remote: string) => {
    let pty: PtyRequest | undefined;
    let proc: SessionProcess | undefined;
    const clientEnv: Record<string, string> = {};
    session.on("pty", (accept, _reject, info) => {
      pty = { rows: info.rows, cols: info.cols, term: info.term, ...(target.ptyInstance ? { instance: target.ptyInstance } : {}) };
      accept?.();
    });
    session.on("window-change", (accept, _reject, info) => {
      accept?.();
      if (pty) Object.assign(pty, { rows: info.rows, cols: info.cols });
      void proc?.resize(info.rows, info.cols);
    });
    session.on("env", (accept, reject, info) => {
      if (!ACCEPT_ENV.test(info.key)) return reject?.();
      clientEnv[info.key] = info.val;
      accept?.();
    });
    session.on("signal", (accept, _reject, info) => {
      accept?.();
      const name = `SIG${info.name.replace(/^SIG/, "")}`;
      if (/^SIG(HUP|INT|QUIT|KILL|TERM|USR1|USR2)$/.test(name)) proc?.signal(name as NodeJS.Signals);
    });
    session.on("shell", (accept) => {
      log.line(`session: ${remote}: shell${pty ? " with a pty" : ""}`);
      proc = run(accept(), [target.account.shell, "-l"], pty, clientEnv, remote);
    });
    session.on("exec", (accept, _reject, info) => {
      log.line(`session: ${remote}: exec ${JSON.stringify(info.command)}`);
      proc = run(accept(), [target.account.shell, "-c", info.command], pty, clientEnv, remote);
    });
    session.on("sftp", (accept, reject) => {
      if (closing) return reject?.();
      log.line(`session: ${remote}: sftp`);
      serveSftp(accept(), { fs: target.files, mountPoint: isJail ? "/" : PLAIN_IMAGE_DIR, home: isJail ? target.account.home : PLAIN_IMAGE_DIR }, log);
    });
    session.on("subsystem", (_accept, reject) => reject?.());
    session.on("auth-agent", (_accept, reject) => reject?.());
    session.on("x11", (_accept, reject) => reject?.());
  };

  const limits: UnauthenticatedLimits = { ...UNAUTHENTICATED, ...opts.unauthenticated };
  /** TCP connections by "ip:port", from accept to close; `pending` until the login succeeds. */
  const sockets = new Map<string, { socket: Socket; pending: boolean; timer: NodeJS.Timeout }>();
  const pendingFrom = (ip: string) => [...sockets.values()].filter((c) => c.pending && c.socket.remoteAddress === ip).length;
  const pendingAll = () => [...sockets.values()].filter((c) => c.pending).length;
  const drop = (remote: string, socket: Socket, reason: string) => {
    emit({ type: "dropped", remote, reason });
    socket.destroy();
  };
  const loggedIn = (remote: string) => {
    const c = sockets.get(remote);
    if (!c) return;
    c.pending = false;
    clearTimeout(c.timer);
  };

  const ssh = new ssh2.Server({ hostKeys: [hostKey], ident: "Kiln" }, (client: Connection, info: ClientInfo) => {
    const remote = `${info.ip}:${info.port}`;
    if (closing) return void client.end();
    clients.add(client);
    emit({ type: "connect", remote });
    let refusals = 0;
    client.on("authentication", (ctx) =>
      authenticate(ctx, remote, () => {
        if (++refusals < MAX_REFUSALS) return;
        const c = sockets.get(remote);
        if (c) drop(remote, c.socket, `${MAX_REFUSALS} refused authentication attempts`);
        else client.end();
      }),
    );
    client.on("ready", () => {
      loggedIn(remote);
      client.on("session", (accept) => openSession(accept(), remote));
    });
    client.on("error", (e: Error) => log.line(`session: ${remote}: ${e.message}`));
    client.on("close", () => {
      clients.delete(client);
      emit({ type: "disconnect", remote });
    });
  });
  // Kiln accepts the TCP connections itself and hands them to ssh2 (injectSocket): ssh2 only
  // reports a connection once the client has sent its version line, so a client that sends
  // nothing would escape both the grace time and the caps.
  const server = net.createServer((socket) => {
    const remote = `${socket.remoteAddress ?? "?"}:${socket.remotePort ?? 0}`;
    socket.on("error", () => {}); // a reset connection; ssh2 reports its own errors
    if (closing) return void socket.destroy();
    if (pendingAll() >= limits.perSession) return drop(remote, socket, `${limits.perSession} connections of this session are not logged in yet`);
    if (pendingFrom(socket.remoteAddress ?? "") >= limits.perAddress) return drop(remote, socket, `${limits.perAddress} connections from ${socket.remoteAddress} are not logged in yet`);
    const timer = setTimeout(() => {
      if (sockets.get(remote)?.pending) drop(remote, socket, `not logged in within ${limits.graceMs / 1000} s (login grace time)`);
    }, limits.graceMs);
    timer.unref();
    sockets.set(remote, { socket, pending: true, timer });
    socket.once("close", () => {
      clearTimeout(timer);
      sockets.delete(remote);
    });
    ssh.injectSocket(socket);
  });

  /** Waits until every command's channel is closed by both sides (the client has its exit status), or `ms`. */
  const drain = async (ms: number) => {
    for (const end = Date.now() + ms; channels.size > 0 && Date.now() < end; ) await new Promise((r) => setTimeout(r, 50));
  };
  let closed: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (closed ??= (async () => {
      closing = true;
      watch.stop();
      opts.signal?.removeEventListener("abort", onAbort);
      // Stop listening; the callback only comes once every connection is gone, so end them now.
      const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
      // `ssh host touch /tmp/complete` is still finishing when the marker is seen: let commands
      // that are ending deliver their exit status and close their channel (a disconnect before
      // the client's close makes its ssh exit 255), briefly.
      if (!opts.signal?.aborted) await drain(CLOSE_GRACE_MS);
      for (const c of clients) c.end();
      for (const c of sockets.values()) if (c.pending) c.socket.destroy(); // not even an SSH client yet
      await Promise.all([...processes].map((p) => p.stop()));
      // Whatever left its process group meanwhile (setsid, nohup) still carries the session's tag.
      try {
        const strays = await killProcessesWithEnv(sessionTag);
        if (strays > 0) log.line(`session: killed ${strays} process(es) left behind`);
        await target.release();
        if (!isJail) await removeMarkers(target.files, log, "session");
        await Promise.race([stopped, new Promise((r) => setTimeout(r, 2000).unref())]);
      } finally {
        settleMarker.reject(opts.signal?.aborted ? cancelled(opts.signal.reason) : cancelled("the customize session was closed before a marker was set"));
        log.line("session: closed");
      }
    })());
  const onAbort = () => void close();

  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(opts.listen.port ?? 0, opts.listen.host, () => {
        server.off("error", reject);
        resolve();
      });
    });
  } catch (e) {
    watch.stop();
    await target.release();
    throw new KilnError("INPUT_INVALID", `cannot listen on ${opts.listen.host}:${opts.listen.port ?? 0}: ${(e as Error).message}`);
  }
  server.on("error", (e: Error) => log.line(`session: server: ${e.message}`));
  opts.signal?.addEventListener("abort", onAbort, { once: true });
  if (opts.signal?.aborted) void close(); // aborted while the jail was starting
  const address = server.address() as AddressInfo;
  log.line(`session: ${opts.target.mode} session listening on ${address.address}:${address.port} after ${Date.now() - started} ms (host key ${fingerprint(hostBlob)})`);

  return {
    host: opts.listen.host,
    port: address.port,
    hostKeyFingerprint: fingerprint(hostBlob),
    hostPublicKey: `${host.type} ${hostBlob.toString("base64")}`,
    get status() {
      return status;
    },
    events,
    waitForMarker: () => marker,
    close,
    release: close,
    [Symbol.asyncDispose]: close,
  };
}

/** Removes `complete`/`failed` from the top of the image (not jailed, they are the image's own files). */
async function removeMarkers(files: RootFs, log: LogSink, why: "stale" | "session"): Promise<void> {
  for (const m of MARKERS) {
    const p = `/${m}`;
    const st = await files.stat(p, false).catch(() => undefined);
    if (!st) continue;
    try {
      if (st.isDirectory()) await files.rmdir(p);
      else await files.unlink(p);
      log.line(`session: removed ${why === "stale" ? "a stale marker" : "the marker"} ${PLAIN_IMAGE_DIR}${p}`);
    } catch (e) {
      log.line(`session: could not remove ${PLAIN_IMAGE_DIR}${p}: ${(e as Error).message}`);
    }
  }
}

/**
 * A fresh ed25519 host key for one session. ssh2 (1.17) writes a malformed key now and then
 * (about 3 in 1,000: a public key whose first byte is zero comes out one byte short, and its own
 * parser then refuses it), which failed a session at start; such a key is made again.
 */
export function generateHostKey(): string {
  for (let attempt = 0; ; attempt++) {
    const key = ssh2.utils.generateKeyPairSync("ed25519").private;
    const parsed = ssh2.utils.parseKey(key);
    const first = Array.isArray(parsed) ? parsed[0] : parsed;
    if ((first && !(first instanceof Error) && first.isPrivateKey()) || attempt >= 20) return key;
  }
}

function describe(e: SessionEvent): string {
  switch (e.type) {
    case "connect":
      return `${e.remote} connected`;
    case "disconnect":
      return `${e.remote} disconnected`;
    case "auth-ok":
      return `${e.remote} logged in as ${e.user} with ${e.fingerprint}${e.comment ? ` (${e.comment})` : ""}`;
    case "auth-refused":
      return `${e.remote} refused: ${e.user} by ${e.method}${e.fingerprint ? ` ${e.fingerprint}` : ""}: ${e.reason}`;
    case "dropped":
      return `${e.remote} dropped before logging in: ${e.reason}`;
    case "marker":
      return `marker ${e.marker}`;
  }
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
