/**
 * A read-only HTTP server for one directory, for boot tests: the guest fetches its squashfs root
 * from it (qemu user networking maps the host's loopback to 10.0.2.2).
 *
 * Contract: listens on 127.0.0.1 on an ephemeral port; answers GET and HEAD for regular files
 * under `dir` only (no listings), with single byte ranges (`Range: bytes=…`, 206/416); refuses
 * `..` segments and anything whose real path (symlinks resolved) leaves `dir`; writes one access
 * log line per request to `log`. `routes` serves a file under another URL path, e.g.
 * `{ "/squashfs": "images/root.squashfs" }`.
 */
import { createReadStream } from "node:fs";
import { realpath, stat } from "node:fs/promises";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { pipeline } from "node:stream";
import { nullLog, type LogSink } from "../host/exec.js";
import { parseRange } from "../store/byte-range.js";

export interface ServeOptions {
  /** Access log: one line per request. */
  log?: LogSink;
  /** URL path → file path relative to `dir`. */
  routes?: Record<string, string>;
}

export interface DirectoryServer {
  readonly port: number;
  /** `http://127.0.0.1:<port><urlPath>`: the URL for a client on this host. */
  url(urlPath: string): string;
  close(): Promise<void>;
}

export async function serveDirectory(dir: string, opts: ServeOptions = {}): Promise<DirectoryServer> {
  const root = await realpath(dir);
  const log = opts.log ?? nullLog;
  const routes = new Map(Object.entries(opts.routes ?? {}));

  const server = createServer((req, res) => {
    const started = Date.now();
    res.on("close", () => {
      const how = res.writableFinished ? "" : " (client closed early)";
      log.line(`http: ${req.method} ${req.url} → ${res.statusCode} ${res.getHeader("content-length") ?? "-"} bytes ${((Date.now() - started) / 1000).toFixed(1)} s${how}`);
    });
    handle(root, routes, req, res).catch((e: unknown) => {
      // A bug or a file that vanished mid-request: answer if we still can, never crash the build.
      log.line(`http: ${req.method} ${req.url}: ${(e as Error).message}`);
      if (!res.headersSent) send(res, 500, "internal error");
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  log.line(`http: serving ${root} on 127.0.0.1:${port}`);

  return {
    port,
    url: (urlPath) => `http://127.0.0.1:${port}${urlPath.startsWith("/") ? "" : "/"}${urlPath}`,
    close: () =>
      new Promise<void>((resolve) => {
        // A guest killed mid-download leaves its connection open: drop it, or close() waits forever.
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

async function handle(root: string, routes: Map<string, string>, req: IncomingMessage, res: ServerResponse): Promise<void> {
  if (req.method !== "GET" && req.method !== "HEAD") {
    res.setHeader("allow", "GET, HEAD");
    return send(res, 405, "only GET and HEAD");
  }
  // Decoded by hand: WHATWG URL parsing would quietly resolve "/a/../b" (and "%2e%2e"), and a
  // client that sends ".." is refused, not humoured.
  let urlPath: string;
  try {
    urlPath = decodeURIComponent((req.url ?? "/").split("?")[0]!);
  } catch {
    return send(res, 400, "bad URL");
  }
  const relative = routes.get(urlPath) ?? urlPath;
  // Refused before touching the disk; the realpath check below also catches symlinks.
  if (relative.includes("\0") || relative.split(/[\\/]/).includes("..")) return send(res, 400, "'..' is not allowed");

  let file: string;
  try {
    file = await realpath(path.join(root, relative));
  } catch {
    return send(res, 404, "not found");
  }
  if (file !== root && !file.startsWith(root + path.sep)) return send(res, 403, "outside the served directory");
  const st = await stat(file);
  if (!st.isFile()) return send(res, 404, "not found");

  res.setHeader("accept-ranges", "bytes");
  res.setHeader("content-type", "application/octet-stream");
  res.setHeader("last-modified", st.mtime.toUTCString());
  const range = parseRange(req.headers.range, st.size);
  if (range === "unsatisfiable") {
    res.setHeader("content-range", `bytes */${st.size}`);
    return send(res, 416, "range not satisfiable");
  }
  const [start, end] = range ?? [0, st.size - 1];
  if (range) {
    res.statusCode = 206;
    res.setHeader("content-range", `bytes ${start}-${end}/${st.size}`);
  }
  res.setHeader("content-length", String(Math.max(0, end - start + 1)));
  if (req.method === "HEAD" || st.size === 0) {
    res.end();
    return;
  }
  // pipeline destroys the file stream when the client goes away (busybox wget --spider reads the
  // headers of a GET and resets the connection).
  pipeline(createReadStream(file, { start, end }), res, () => {});
}

function send(res: ServerResponse, status: number, message: string): void {
  res.statusCode = status;
  res.setHeader("content-type", "text/plain; charset=utf-8");
  res.setHeader("content-length", String(Buffer.byteLength(message) + 1));
  res.end(message + "\n");
}
