/**
 * The one SQL layer under the catalog and the queue. Two implementations speak the same
 * PostgreSQL dialect: PGlite (Postgres compiled to WASM, embedded in this process, files in the
 * data dir) and a real PostgreSQL server through `pg`'s pool. Nothing above this file knows
 * which one it runs on, except for messages.
 *
 * Contract:
 *  - query() runs one statement with $1… parameters and returns its rows (json/jsonb as objects,
 *    timestamps as Date, int8 as string: cast in SQL when a number is wanted);
 *  - exec() runs a script of several statements without parameters (migrations);
 *  - transaction() runs fn on one connection inside BEGIN … COMMIT (ROLLBACK when fn throws);
 *  - executeSql() is the adapter pg-boss takes as its `db` option (docs/architecture.md#catalog-queue-and-workers);
 *  - watch() (PostgreSQL) delivers NOTIFY payloads of a channel, and says when it cannot.
 */
import { mkdir, open, readFile, rm } from "node:fs/promises";
import path from "node:path";
import { KilnError } from "../errors.js";
import { isProcessAlive } from "../host/process-alive.js";

export interface SqlRunner {
  query<T = Record<string, unknown>>(text: string, params?: unknown[]): Promise<T[]>;
}

export interface Sql extends SqlRunner {
  readonly dialect: "pglite" | "postgres";
  /** Where it is, for messages: a directory or a URL without its password. */
  readonly where: string;
  exec(script: string): Promise<void>;
  transaction<T>(fn: (tx: SqlRunner) => Promise<T>): Promise<T>;
  executeSql(text: string, values?: unknown[]): Promise<{ rows: unknown[] }>;
  /**
   * PostgreSQL only: LISTENs on `channel` on a connection of its own, calling `onNotify` with
   * each payload. `onLive(false)` is called as soon as the connection is found broken
   * (notifications may be missed from then on), `onLive(true)` once it listens again; it
   * reconnects by itself. Returns a function that stops it.
   */
  watch?(channel: string, onNotify: (payload: string) => void, onLive: (live: boolean) => void): () => Promise<void>;
  close(): Promise<void>;
}

function catalogError(where: string, e: unknown): KilnError {
  if (e instanceof KilnError) return e;
  return new KilnError("CATALOG_FAILED", `catalog ${where}: ${(e as Error).message ?? String(e)}`, { cause: e });
}

/** Opens the catalog database: a postgres:// URL, or PGlite in `dataDir/catalog` when url is undefined. */
export async function openSql(url: string | undefined, dataDir: string): Promise<Sql> {
  if (url === undefined) return openPglite(path.join(dataDir, "catalog"));
  if (!/^postgres(ql)?:\/\//.test(url)) {
    throw new KilnError("SERVICE_CONFIG", `--database ${JSON.stringify(redact(url))}: use a postgres://user:password@host:port/db URL, or leave it empty for the embedded catalog in --data-dir`);
  }
  return openPostgres(url);
}

export function redact(url: string): string {
  return url.replace(/\/\/([^:/@]+):([^@]*)@/, "//$1:***@");
}

// ---------------------------------------------------------------------------------------------
// PGlite

async function openPglite(dir: string): Promise<Sql> {
  await mkdir(dir, { recursive: true });
  // PGlite has no locking of its own: two processes on one data dir corrupt it. A pid file
  // taken with O_EXCL keeps `kiln worker` or a second `kiln serve` out.
  const release = await lockDataDir(dir);
  let db: import("@electric-sql/pglite").PGlite;
  try {
    const { PGlite } = await import("@electric-sql/pglite");
    db = new PGlite(dir);
    await db.waitReady;
  } catch (e) {
    await release();
    throw catalogError(dir, e);
  }
  const run: SqlRunner = {
    async query<T>(text: string, params?: unknown[]) {
      try {
        return (await db.query<T>(text, params)).rows;
      } catch (e) {
        throw catalogError(dir, e);
      }
    },
  };
  return {
    dialect: "pglite",
    where: dir,
    query: run.query,
    async exec(script) {
      try {
        await db.exec(script);
      } catch (e) {
        throw catalogError(dir, e);
      }
    },
    async transaction(fn) {
      return db.transaction(async (tx) =>
        fn({
          async query<T>(text: string, params?: unknown[]) {
            return (await tx.query<T>(text, params)).rows;
          },
        }),
      );
    },
    async executeSql(text, values) {
      // pg-boss sends some scripts of several statements without parameters; PGlite's query()
      // takes one statement, exec() several.
      if (values && values.length > 0) return db.query(text, values);
      const results = await db.exec(text);
      return results[results.length - 1] ?? { rows: [] };
    },
    async close() {
      try {
        await db.close();
      } finally {
        await release();
      }
    },
  };
}

async function lockDataDir(dir: string): Promise<() => Promise<void>> {
  const lock = path.join(dir, "kiln.lock");
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fh = await open(lock, "wx");
      await fh.writeFile(`${process.pid}\n`);
      await fh.close();
      return () => rm(lock, { force: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw catalogError(dir, e);
      const pid = Number((await readFile(lock, "utf8").catch(() => "")).trim());
      if (pid > 0 && pid !== process.pid && isProcessAlive(pid)) {
        throw new KilnError("CATALOG_FAILED", `catalog ${dir} is in use by process ${pid}; the embedded catalog serves one process`, {
          hint: "stop that process, or run the service on PostgreSQL (--database postgres://…) to share the catalog between processes and machines",
        });
      }
      await rm(lock, { force: true }); // left by a process that died
    }
  }
  throw new KilnError("CATALOG_FAILED", `catalog ${dir}: cannot take ${lock}`);
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

async function openPostgres(url: string): Promise<Sql> {
  const pg = (await import("pg")).default;
  const where = redact(url);
  // A server that went away (restart, network cut) fails new connections in 10 s instead of
  // never; keepalives find dead connections.
  const pool = new pg.Pool({ connectionString: url, max: 10, application_name: "kiln", connectionTimeoutMillis: 10_000, keepAlive: true });
  pool.on("error", () => {
    // An idle client lost its connection; the next query reconnects or reports.
  });
  try {
    const c = await pool.connect();
    c.release();
  } catch (e) {
    await pool.end().catch(() => {});
    throw new KilnError("CATALOG_FAILED", `catalog ${where}: cannot connect (${(e as Error).message})`, { hint: "check the --database URL and that PostgreSQL is running", cause: e });
  }
  const query = async <T>(text: string, params?: unknown[]): Promise<T[]> => {
    try {
      return (await pool.query(text, params as unknown[])).rows as T[];
    } catch (e) {
      throw catalogError(where, e);
    }
  };
  return {
    dialect: "postgres",
    where,
    query,
    async exec(script) {
      await query(script);
    },
    async transaction(fn) {
      const client = await pool.connect();
      try {
        await client.query("BEGIN");
        const r = await fn({ query: async <T>(text: string, params?: unknown[]) => (await client.query(text, params as unknown[])).rows as T[] });
        await client.query("COMMIT");
        return r;
      } catch (e) {
        await client.query("ROLLBACK").catch(() => {});
        throw catalogError(where, e);
      } finally {
        client.release();
      }
    },
    async executeSql(text, values) {
      return pool.query(text, values as unknown[]);
    },
    watch(channel, onNotify, onLive) {
      return watchChannel(pg.Client, url, channel, onNotify, onLive);
    },
    async close() {
      await pool.end();
    },
  };
}

/** How often a watching connection is checked, and how long a check may take. */
const WATCH_PING_MS = 2000;

/**
 * LISTEN on a dedicated connection, checked every WATCH_PING_MS (a connection that died silently
 * must not leave the caller trusting it), reconnecting after a failure.
 */
function watchChannel(
  Client: typeof import("pg").Client,
  url: string,
  channel: string,
  onNotify: (payload: string) => void,
  onLive: (live: boolean) => void,
): () => Promise<void> {
  let stopped = false;
  let client: import("pg").Client | undefined;
  let timer: NodeJS.Timeout | undefined;
  const lose = (c: import("pg").Client) => {
    if (client !== c) return;
    client = undefined;
    onLive(false);
    void c.end().catch(() => {});
    if (!stopped) timer = setTimeout(() => void connect(), WATCH_PING_MS);
  };
  const connect = async () => {
    if (stopped) return;
    const c = new Client({ connectionString: url, application_name: "kiln-watch", keepAlive: true });
    c.on("error", () => lose(c));
    c.on("end", () => lose(c));
    c.on("notification", (m) => onNotify(m.payload ?? ""));
    try {
      await c.connect();
      await c.query(`LISTEN ${channel}`);
    } catch {
      void c.end().catch(() => {});
      if (!stopped) timer = setTimeout(() => void connect(), WATCH_PING_MS);
      return;
    }
    if (stopped) return void c.end().catch(() => {});
    client = c;
    onLive(true);
    const ping = async () => {
      if (client !== c || stopped) return;
      const late = setTimeout(() => lose(c), WATCH_PING_MS);
      try {
        await c.query("SELECT 1");
        clearTimeout(late);
        if (client === c && !stopped) timer = setTimeout(() => void ping(), WATCH_PING_MS);
      } catch {
        clearTimeout(late);
        lose(c);
      }
    };
    timer = setTimeout(() => void ping(), WATCH_PING_MS);
  };
  void connect();
  return async () => {
    stopped = true;
    if (timer) clearTimeout(timer);
    const c = client;
    client = undefined;
    if (c) {
      onLive(false);
      await c.end().catch(() => {});
    }
  };
}
