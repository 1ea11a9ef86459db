/**
 * Server settings: one table. Each row is a setting with its command-line flag, its environment
 * variable, its default, what it does and how its text is parsed. From the table come the
 * commander options of `kiln serve`, `kiln worker` and `kiln token`, their `--help`, and the
 * environment parsing; nothing else declares a setting (mkosi's SETTINGS, changesets' config).
 *
 * Precedence: flag, then environment, then default. A bad value is reported with the flag and
 * the variable it may have come from: `--listen "x": use HOST:PORT, e.g. 127.0.0.1:8080 (env KILN_LISTEN)`.
 */
import { existsSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { Option, type Command } from "commander";
import { KilnError } from "../errors.js";
import { ARCHES, type Arch } from "../catalog/records.js";
import { parseSize } from "../size.js";

export interface Listen {
  host: string;
  port: number;
}

export interface Setting<T> {
  /** Commander flag spelling, e.g. "--listen <host:port>" or "--no-worker". */
  flag: string;
  env: string;
  /** The default as the user would write it (parsed like any other value); a function for defaults that depend on others. */
  default: string | ((s: DefaultContext) => string);
  /** How a computed default is shown in --help and docs. */
  shown?: string;
  description: string;
  parse: (text: string) => T;
}

function fail(rule: string): never {
  throw new Error(rule);
}

function positiveInt(what: string, min = 1) {
  return (t: string): number => {
    const n = Number(t);
    if (!Number.isInteger(n) || n < min) fail(`use ${what} (an integer ≥ ${min})`);
    return n;
  };
}

function seconds(t: string): number {
  const n = Number(t);
  if (!Number.isFinite(n) || n <= 0) fail("use a number of seconds > 0, e.g. 5 or 0.5");
  return n;
}

function bool(t: string): boolean {
  if (/^(1|true|yes|on)$/i.test(t)) return true;
  if (/^(0|false|no|off)$/i.test(t)) return false;
  return fail("use true or false");
}

/** "10M", "1G", "512K" or a byte count (src/size.ts). */
function size(t: string): number {
  return parseSize(t) ?? fail("use a size such as 64M, 1G or 1048576");
}

export function parseListen(t: string): Listen {
  const m = /^(?:\[([0-9a-f:]+)\]|([^:]+)):(\d{1,5})$/i.exec(t);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) fail("use HOST:PORT, e.g. 127.0.0.1:8080 or [::1]:8080 (port 0 picks a free one)");
  return { host: m[1] ?? m[2]!, port };
}

const optionalText = (t: string): string | undefined => (t === "" ? undefined : t);

/** An http(s) base URL without query or credentials, trailing slashes dropped; "" for none. */
export function parsePublicUrl(t: string): string | undefined {
  if (t === "") return undefined;
  let u: URL;
  try {
    u = new URL(t);
  } catch {
    return fail("use an http(s) URL, e.g. https://kiln.example.com:8443");
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") fail("use an http(s) URL, e.g. https://kiln.example.com:8443");
  if (u.username || u.password || u.search || u.hash) fail("use a plain base URL: no credentials, query or fragment");
  return u.href.replace(/\/+$/, "");
}

/** What a computed default may depend on (settings resolved before it: every setting with a fixed default). */
export interface DefaultContext {
  dataDir?: string;
  streamsSignKey?: string;
}

function dataPath(rel: string) {
  return (s: DefaultContext): string => path.join(s.dataDir ?? "/var/lib/kiln", rel);
}

/** Every service setting. Keys are the names code uses; `flag` and `env` are what users type. */
export const SETTINGS = {
  dataDir: {
    flag: "--data-dir <dir>",
    env: "KILN_DATA_DIR",
    default: "/var/lib/kiln",
    description: "where the service keeps its state: the embedded catalog, objects, API tokens, job work dirs",
    parse: (t: string) => path.resolve(t),
  },
  listen: {
    flag: "--listen <host:port>",
    env: "KILN_LISTEN",
    default: "127.0.0.1:8080",
    description: "address the API listens on (plain HTTP on loopback unless --tls-cert/--tls-key are given)",
    parse: parseListen,
  },
  database: {
    flag: "--database <url>",
    env: "KILN_DATABASE",
    default: "",
    description: "catalog and queue: a postgres://user:pass@host:port/db URL; empty: PGlite embedded in <data-dir>/catalog",
    parse: optionalText,
  },
  store: {
    flag: "--store <url>",
    env: "KILN_STORE",
    default: (s: DefaultContext): string => `file://${path.join(s.dataDir ?? "/var/lib/kiln", "objects")}`,
    shown: "file://<data-dir>/objects",
    description: "object store for recipes and images: file:///path or s3://host:port (credentials from KILN_S3_* variables)",
    parse: (t: string) => t,
  },
  cacheDir: {
    flag: "--cache-dir <dir>",
    env: "KILN_CACHE_DIR",
    default: "/var/cache/kiln",
    description: "the build engine's layer and package cache (shared with `kiln build`)",
    parse: (t: string) => path.resolve(t),
  },
  workDir: {
    flag: "--work-dir <dir>",
    env: "KILN_WORK_DIR",
    default: dataPath("work"),
    shown: "<data-dir>/work",
    description: "where a worker unpacks recipes and builds out dirs (one folder per job, removed when it ends)",
    parse: (t: string) => path.resolve(t),
  },
  worker: {
    flag: "--no-worker",
    env: "KILN_WORKER",
    default: "true",
    shown: "a worker runs (KILN_WORKER=false: none)",
    description: "kiln serve: do not run an in-process worker (jobs wait for `kiln worker` processes)",
    parse: bool,
  },
  concurrency: {
    flag: "--concurrency <n>",
    env: "KILN_CONCURRENCY",
    default: "1",
    description: "jobs a worker runs at once",
    parse: positiveInt("a number of jobs"),
  },
  heartbeat: {
    flag: "--heartbeat <seconds>",
    env: "KILN_HEARTBEAT",
    default: "5",
    description: "how often a worker reports it is alive (and checks its jobs for cancellation)",
    parse: seconds,
  },
  workerTimeout: {
    flag: "--worker-timeout <seconds>",
    env: "KILN_WORKER_TIMEOUT",
    default: "30",
    description: "a worker silent this long is dead: its jobs end `error` (or are retried, see --job-retries)",
    parse: seconds,
  },
  storeRetry: {
    flag: "--store-retry-seconds <seconds>",
    env: "KILN_STORE_RETRY_SECONDS",
    default: "60",
    description: "an S3 request that fails for a reason a later try can cure (connection refused, 5xx) is retried with backoff this long before the job fails (and is queued again while --job-retries allows)",
    parse: seconds,
  },
  jobRetries: {
    flag: "--job-retries <n>",
    env: "KILN_JOB_RETRIES",
    default: "0",
    description: "times a job is queued again before it ends `error`: when its worker died, or when the object store stayed unreachable for --store-retry-seconds",
    parse: positiveInt("a number of retries", 0),
  },
  verify: {
    flag: "--verify <when>",
    env: "KILN_VERIFY",
    default: "recipe",
    description: "boot-verify built images: recipe (as the recipe's `verify` says), always, never",
    parse: (t: string) => (["recipe", "always", "never"].includes(t) ? (t as "recipe" | "always" | "never") : fail("use recipe, always or never")),
  },
  maxRecipeSize: {
    flag: "--max-recipe-size <size>",
    env: "KILN_MAX_RECIPE_SIZE",
    default: "64M",
    description: "largest recipe archive accepted (compressed); unpacked it may be 4× that",
    parse: size,
  },
  tlsCert: {
    flag: "--tls-cert <file>",
    env: "KILN_TLS_CERT",
    default: "",
    description: "serve HTTPS with this PEM certificate (needs --tls-key)",
    parse: optionalText,
  },
  tlsKey: {
    flag: "--tls-key <file>",
    env: "KILN_TLS_KEY",
    default: "",
    description: "PEM private key for --tls-cert",
    parse: optionalText,
  },
  publicUrl: {
    flag: "--public-url <url>",
    env: "KILN_PUBLIC_URL",
    default: "",
    shown: "http(s)://<listen host>:<port it got> (a wildcard host: <hostname>)",
    description: "the URL clients reach the service at (a proxy's, if one is in front); presigned download URLs of a file:// store point below it, at <url>/objects/",
    parse: parsePublicUrl,
  },
  logLevel: {
    flag: "--log-level <level>",
    env: "KILN_LOG_LEVEL",
    default: "warn",
    description: "kiln serve: level of the API's request log on stderr: fatal, error, warn, info (every request), debug, trace, silent; kiln worker serves no HTTP and ignores it (its job and reaper lines always go to stderr)",
    parse: (t: string) => (["fatal", "error", "warn", "info", "debug", "trace", "silent"].includes(t) ? t : fail("use fatal, error, warn, info, debug, trace or silent")),
  },
  sshListen: {
    flag: "--ssh-listen <address>",
    env: "KILN_SSH_LISTEN",
    default: "0.0.0.0",
    description: "address the SSH servers of customize and debug sessions listen on (a free port per session; keys only)",
    parse: (t: string) => (/^[0-9a-f.:]+$/i.test(t) ? t : fail("use an IP address, e.g. 0.0.0.0 or 10.1.0.5")),
  },
  sshHost: {
    flag: "--ssh-host <name>",
    env: "KILN_SSH_HOST",
    default: (): string => os.hostname(),
    shown: "<hostname>",
    description: "host name operators reach sessions by: ssh_containers[].connection_info.customer_access.host",
    parse: (t: string) => (/^[A-Za-z0-9.:-]+$/.test(t) ? t : fail("use a host name or IP address")),
  },
  sshClusterHost: {
    flag: "--ssh-cluster-host <name>",
    env: "KILN_SSH_CLUSTER_HOST",
    default: "",
    shown: "the worker's first non-loopback IPv4 address",
    description: 'host name other services of the site reach sessions by: connection_info["cluster.local"].host',
    parse: (t: string) => (t === "" || /^[A-Za-z0-9.:-]+$/.test(t) ? optionalText(t) : fail("use a host name or IP address")),
  },
  sshLoginGrace: {
    flag: "--ssh-login-grace <seconds>",
    env: "KILN_SSH_LOGIN_GRACE",
    default: "30",
    description: "a connection to a session that has not logged in after this long is closed (as sshd's LoginGraceTime)",
    parse: seconds,
  },
  sessionTimeout: {
    flag: "--session-timeout <seconds>",
    env: "KILN_SESSION_TIMEOUT",
    default: "86400",
    description: "a customize or debug session with no complete/failed marker after this long ends the job `error`",
    parse: seconds,
  },
  siteCa: {
    flag: "--site-ca <files>",
    env: "KILN_SITE_CA",
    default: "",
    description: "PEM CA certificates of the site (comma-separated files), added to the trust store of every image a job produces",
    parse: (t: string) => {
      const files = t.split(",").map((f) => f.trim()).filter((f) => f !== "").map((f) => path.resolve(f));
      const missing = files.filter((f) => !existsSync(f));
      if (missing.length > 0) fail(`no such file: ${missing.join(", ")}`);
      return files;
    },
  },
  metrics: {
    flag: "--metrics <access>",
    env: "KILN_METRICS",
    default: "open",
    description: "who may scrape GET /metrics (Prometheus text; counts and timings, no record data): open (no token, as Prometheus scrapes by default), token (any API token, read-only will do), off (no /metrics route)",
    parse: (t: string) => (["open", "token", "off"].includes(t) ? (t as "open" | "token" | "off") : fail("use open, token or off")),
  },
  streams: {
    flag: "--streams <access>",
    env: "KILN_STREAMS",
    default: "off",
    description: "the MAAS boot source at /streams/v1/index.sjson (images can carry a site's CA and configuration): off (no /streams routes), open (no token, as MAAS sends none), token (any API token)",
    parse: (t: string) => (["open", "token", "off"].includes(t) ? (t as "open" | "token" | "off") : fail("use off, open or token")),
  },
  streamsLabels: {
    flag: "--streams-labels <labels>",
    env: "KILN_STREAMS_LABELS",
    default: "stable",
    description: "the image labels the stream tree lists (comma-separated; one products file per label): a job labels its image candidate, `kiln ims images promote ID --to stable` moves it",
    parse: (t: string) => {
      const labels = t.split(",").map((l) => l.trim()).filter((l) => l !== "");
      for (const l of labels) if (!/^[a-z][a-z0-9-]*$/.test(l)) fail(`${JSON.stringify(l)} is not a label; use words such as candidate,stable`);
      return labels.length > 0 ? labels : fail("name at least one label, e.g. stable");
    },
  },
  streamsKeep: {
    flag: "--streams-keep <n>",
    env: "KILN_STREAMS_KEEP",
    default: "3",
    description: "versions (image records) the stream tree keeps per product, newest first",
    parse: positiveInt("a number of versions"),
  },
  streamsSignKey: {
    flag: "--streams-sign-key <key>",
    env: "KILN_STREAMS_SIGN_KEY",
    default: "",
    description: "GnuPG key that signs index.sjson, as `kiln streams publish --sign-key` takes it (an exported secret key file, or a key id in GNUPGHOME); its public key is served at /streams/keyring.gpg. Without it only index.json is served",
    parse: (t: string) => t,
  },
  signKey: {
    flag: "--sign-key <key>",
    env: "KILN_SIGN_KEY",
    // One key for all the service serves: whoever trusts its streams (/streams/keyring.gpg) can
    // check its images with the same keyring. `kiln worker` has no streams key: give it there.
    default: (s: DefaultContext): string => s.streamsSignKey ?? "",
    shown: "kiln serve: the --streams-sign-key key; kiln worker: none",
    description: "GnuPG key that signs SHA256SUMS (SHA256SUMS.gpg) of every image the jobs make, as `kiln build --sign-key` takes it (an exported secret key file without passphrase, or a key id in GNUPGHOME); tried once at start. Give \"\" for unsigned checksums",
    parse: optionalText,
  },
  streamsBootloaders: {
    flag: "--streams-bootloaders <dir>",
    env: "KILN_STREAMS_BOOTLOADERS",
    default: "",
    description: "a stream folder kept by `kiln streams bootloaders --to DIR` (run it from a timer): its bootloader products (shim, GRUB, PXELINUX) are listed in the stream tree and served from it, so MAAS can boot machines from this source alone",
    parse: (t: string) => {
      if (t === "") return t;
      const dir = path.resolve(t);
      return existsSync(dir) ? dir : fail(`no such folder: ${dir}; make it with \`kiln streams bootloaders --to ${dir}\``);
    },
  },
  workerArch: {
    flag: "--arch <arches>",
    env: "KILN_WORKER_ARCH",
    default: "",
    shown: "native + binfmt_misc",
    description: "the image arches this worker builds, comma-separated, native first (x86_64, aarch64): it takes only jobs of these, and those of the first ones first. Default: this machine's own, then each one a qemu-user-static binfmt_misc handler emulates",
    parse: (t: string): Arch[] => {
      const arches = t.split(",").map((a) => a.trim()).filter((a) => a !== "");
      for (const a of arches) if (!(ARCHES as readonly string[]).includes(a)) fail(`${JSON.stringify(a)} is not an arch; use ${ARCHES.join(" or ")}`);
      return arches as Arch[];
    },
  },
  archWait: {
    flag: "--arch-wait <seconds>",
    env: "KILN_ARCH_WAIT",
    default: "3600",
    description: "how long a job may wait while no live worker builds its arch (an aarch64 recipe and x86_64 workers only) before it ends `error` saying so",
    parse: positiveInt("seconds"),
  },
  workerName: {
    flag: "--worker-name <name>",
    env: "KILN_WORKER_NAME",
    default: (): string => `${os.hostname()}-${process.pid}`,
    shown: "<hostname>-<pid>",
    description: "how this worker is named in job records and logs",
    parse: (t: string) => t,
  },
} as const satisfies Record<string, Setting<unknown>>;

export type SettingName = keyof typeof SETTINGS;
export type ServiceSettings = { [K in SettingName]: ReturnType<(typeof SETTINGS)[K]["parse"]> };

/** Which settings each command takes, in the order --help shows them. */
export const COMMAND_SETTINGS = {
  serve: ["listen", "dataDir", "database", "store", "cacheDir", "workDir", "worker", "concurrency", "heartbeat", "workerTimeout", "jobRetries", "storeRetry", "verify", "maxRecipeSize", "tlsCert", "tlsKey", "publicUrl", "logLevel", "metrics", "streams", "streamsLabels", "streamsKeep", "streamsSignKey", "streamsBootloaders", "signKey", "workerName", "workerArch", "archWait", "sshListen", "sshHost", "sshClusterHost", "sshLoginGrace", "sessionTimeout", "siteCa"],
  worker: ["database", "store", "dataDir", "cacheDir", "workDir", "concurrency", "heartbeat", "workerTimeout", "jobRetries", "storeRetry", "verify", "logLevel", "signKey", "workerName", "workerArch", "archWait", "sshListen", "sshHost", "sshClusterHost", "sshLoginGrace", "sessionTimeout", "siteCa"],
  token: ["dataDir"],
} as const satisfies Record<string, readonly SettingName[]>;

function attributeName(flag: string): string {
  const long = /--(?:no-)?([a-z0-9-]+)/.exec(flag)![1]!;
  return long.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

/** Adds the settings' options to a command; defaults are resolved later (env first), so none is given to commander. */
export function addSettingOptions(cmd: Command, names: readonly SettingName[]): Command {
  for (const name of names) {
    const s: Setting<unknown> = SETTINGS[name];
    const shown = s.shown ?? (typeof s.default === "function" ? undefined : s.default);
    const def = shown ? ` (default ${shown})` : "";
    const opt = new Option(s.flag, `${s.description} [env ${s.env}]${def}`);
    cmd.addOption(opt);
  }
  return cmd;
}

/**
 * Resolves settings from parsed options, the environment and the defaults. Every bad value is
 * reported at once as one SERVICE_CONFIG error.
 */
export function resolveSettings<N extends SettingName>(
  names: readonly N[],
  opts: Record<string, unknown>,
  env: NodeJS.ProcessEnv = process.env,
): Pick<ServiceSettings, N> {
  const out: Partial<ServiceSettings> = {};
  const problems: Array<{ path: string; message: string }> = [];
  // dataDir first (other defaults are paths under it), computed defaults last (they read the others).
  const rank = (n: SettingName) => (n === "dataDir" ? 0 : typeof SETTINGS[n].default === "function" ? 2 : 1);
  const ordered = [...names].sort((a, b) => rank(a) - rank(b));
  for (const name of ordered) {
    const s: Setting<unknown> = SETTINGS[name];
    const attr = attributeName(s.flag);
    const given = opts[attr];
    let text: string;
    let from: string;
    if (s.flag.startsWith("--no-") && given === false) {
      text = "false";
      from = s.flag;
    } else if (typeof given === "string") {
      text = given;
      from = s.flag.split(" ")[0]!;
    } else if (env[s.env] !== undefined) {
      text = env[s.env]!;
      from = `env ${s.env}`;
    } else {
      text = typeof s.default === "function" ? s.default(out as DefaultContext) : s.default;
      from = "default";
    }
    try {
      (out as Record<string, unknown>)[name] = s.parse(text);
    } catch (e) {
      problems.push({ path: s.flag.split(" ")[0]!, message: `${s.flag.split(" ")[0]} ${JSON.stringify(text)} (${from}): ${(e as Error).message}` });
    }
  }
  if (out.tlsCert !== undefined && out.tlsKey === undefined) problems.push({ path: "--tls-key", message: "--tls-cert needs --tls-key (env KILN_TLS_KEY)" });
  if (out.tlsKey !== undefined && out.tlsCert === undefined) problems.push({ path: "--tls-cert", message: "--tls-key needs --tls-cert (env KILN_TLS_CERT)" });
  if (problems.length > 0) {
    throw new KilnError("SERVICE_CONFIG", problems.map((p) => p.message).join("; "), { problems });
  }
  return out as Pick<ServiceSettings, N>;
}

/** The settings as a Markdown table, for docs/service.md. */
export function settingsTable(): string {
  const rows = Object.values(SETTINGS as Record<string, Setting<unknown>>).map((s) => {
    const shown = s.shown ?? (typeof s.default === "function" ? undefined : s.default);
    const def = shown ? `\`${shown}\`` : "(empty)";
    return `| \`${s.flag}\` | \`${s.env}\` | ${def} | ${s.description} |`;
  });
  return ["| flag | env | default | meaning |", "|---|---|---|---|", ...rows].join("\n");
}
