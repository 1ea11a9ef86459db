import assert from "node:assert/strict";
import { request } from "node:http";
import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { serveDirectory, type DirectoryServer } from "../../src/verify/http-server.js";

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** A raw request: fetch() would normalize "/../" away before it reaches the server. */
function get(port: number, urlPath: string, opts: { method?: string; headers?: Record<string, string> } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path: urlPath, method: opts.method ?? "GET", headers: opts.headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }));
    });
    req.on("error", reject);
    req.end();
  });
}

describe("serveDirectory", () => {
  let base: string;
  let server: DirectoryServer;
  const lines: string[] = [];

  before(async () => {
    base = await mkdtemp(path.join(tmpdir(), "kiln-http-"));
    const dir = path.join(base, "out");
    await mkdir(path.join(dir, "generic"), { recursive: true });
    await writeFile(path.join(dir, "squashfs"), "0123456789");
    await writeFile(path.join(dir, "generic", "boot-params"), "root=squash:${squashfs_url}\n");
    await writeFile(path.join(base, "secret"), "SECRET-CONTENT");
    await symlink(path.join(base, "secret"), path.join(dir, "escape"));
    await symlink("squashfs", path.join(dir, "alias"));
    server = await serveDirectory(dir, { log: { line: (l) => lines.push(l) }, routes: { "/images/root.squashfs": "squashfs" } });
  });
  after(async () => {
    await server.close();
    await rm(base, { recursive: true, force: true });
  });

  test("listens on loopback with an ephemeral port", () => {
    assert.ok(server.port > 0);
    assert.equal(server.url("/squashfs"), `http://127.0.0.1:${server.port}/squashfs`);
  });

  test("GET sends the whole file and says ranges are accepted", async () => {
    const r = await get(server.port, "/squashfs");
    assert.equal(r.status, 200);
    assert.equal(r.body, "0123456789");
    assert.equal(r.headers["content-length"], "10");
    assert.equal(r.headers["accept-ranges"], "bytes");
  });

  test("HEAD sends the headers only", async () => {
    const r = await get(server.port, "/generic/boot-params", { method: "HEAD" });
    assert.equal(r.status, 200);
    assert.equal(r.headers["content-length"], "28");
    assert.equal(r.body, "");
  });

  test("Range: a slice, an open end, a suffix, and one past the end", async () => {
    const slice = await get(server.port, "/squashfs", { headers: { range: "bytes=2-5" } });
    assert.equal(slice.status, 206);
    assert.equal(slice.body, "2345");
    assert.equal(slice.headers["content-range"], "bytes 2-5/10");
    assert.equal((await get(server.port, "/squashfs", { headers: { range: "bytes=7-" } })).body, "789");
    assert.equal((await get(server.port, "/squashfs", { headers: { range: "bytes=-3" } })).body, "789");
    const beyond = await get(server.port, "/squashfs", { headers: { range: "bytes=10-" } });
    assert.equal(beyond.status, 416);
    assert.equal(beyond.headers["content-range"], "bytes */10");
  });

  test("'..' is refused, raw or percent-encoded", async () => {
    assert.equal((await get(server.port, "/../secret")).status, 400);
    assert.equal((await get(server.port, "/generic/%2e%2e/%2e%2e/secret")).status, 400);
  });

  test("a symlink out of the directory is refused; one inside is followed", async () => {
    const out = await get(server.port, "/escape");
    assert.equal(out.status, 403);
    assert.doesNotMatch(out.body, /SECRET-CONTENT/);
    assert.equal((await get(server.port, "/alias")).body, "0123456789");
  });

  test("missing files and directories are 404, other methods 405", async () => {
    assert.equal((await get(server.port, "/nothing")).status, 404);
    assert.equal((await get(server.port, "/generic")).status, 404);
    const post = await get(server.port, "/squashfs", { method: "POST" });
    assert.equal(post.status, 405);
    assert.equal(post.headers.allow, "GET, HEAD");
  });

  test("routes serve a file under another name", async () => {
    assert.equal((await get(server.port, "/images/root.squashfs")).body, "0123456789");
  });

  test("every request leaves an access log line", () => {
    assert.ok(lines.some((l) => /GET \/squashfs → 200 10 bytes/.test(l)), lines.join("\n"));
    assert.ok(lines.some((l) => /GET \/nothing → 404/.test(l)));
  });
});
