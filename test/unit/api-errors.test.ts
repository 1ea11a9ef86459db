/**
 * Bad input the catalog cannot store, and the errors Fastify and Node raise before a route runs:
 * every one is an RFC 7807 problem with a 4xx status naming the field, and no error carries a
 * path on the service's disk. Node's own HTTP parser (431, not HTTP) only speaks on a listening
 * server, so those run against one.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import type { AddressInfo } from "node:net";
import { ADMIN, startTestService, type TestService } from "../helpers/service.js";

let s: TestService;
before(async () => {
  s = await startTestService();
});
after(async () => {
  await s.close();
});

interface ProblemJson {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: string;
  errors?: Array<{ path: string; message: string }>;
}

function problem(r: { statusCode: number; headers: Record<string, unknown>; body: string }, status: number, code: string): ProblemJson {
  assert.equal(r.statusCode, status, r.body);
  assert.match(String(r.headers["content-type"]), /^application\/problem\+json/);
  const p = JSON.parse(r.body) as ProblemJson;
  assert.equal(p.status, status);
  assert.equal(p.code, code);
  assert.equal(p.type, "about:blank");
  assert.ok(!r.body.includes(s.dir), `no disk path in ${r.body}`);
  return p;
}

test("a NUL or lone surrogate in a body field is 422 naming the field (it was 503 CATALOG_FAILED with the catalog's path)", async () => {
  const cases: Array<[string, string, string, RegExp]> = [
    ["/v3/public-keys", JSON.stringify({ name: "a\u0000b", public_key: "ssh-ed25519 AAAA k" }), "name", /NUL/],
    ["/v3/public-keys", '{"name": "a\\ud800b", "public_key": "ssh-ed25519 AAAA k"}', "name", /lone UTF-16 surrogate/],
    ["/v3/public-keys", '{"name": "k", "public_key": "ssh-ed25519 AAAA \\udc00"}', "public_key", /lone UTF-16 surrogate/],
    ["/v3/recipes", JSON.stringify({ name: "r", recipe_type: "kiln", linux_distribution: "debian12", template_dictionary: [{ key: "k", value: "v\u0000" }] }), "template_dictionary[0].value", /NUL/],
    ["/v3/remote-build-nodes", JSON.stringify({ xname: "x\u0000" }), "xname", /NUL/],
  ];
  for (const [url, body, field, re] of cases) {
    const r = await s.app.inject({ method: "POST", url, headers: { authorization: `Bearer ${ADMIN}`, "content-type": "application/json" }, payload: body });
    const p = problem(r, 422, "REQUEST_INVALID");
    assert.equal(p.errors?.[0]?.path, field, body);
    assert.match(p.errors![0]!.message, re);
    assert.match(p.detail, new RegExp(`body is invalid: ${field.replace(/[[\]]/g, "\\$&")}:`));
  }
  const pairs = await s.call("POST", "/v3/public-keys", { name: "ok \ud83d\ude00", public_key: "ssh-ed25519 AAAA k" });
  assert.equal(pairs.statusCode, 201, "a surrogate pair (an emoji) is fine");
});

test("a NUL in a path or query parameter is 422 naming it", async () => {
  const path = problem(await s.call("GET", "/v3/remote-build-nodes/x%00y"), 422, "REQUEST_INVALID");
  assert.deepEqual(path.errors?.map((e) => e.path), ["xname"]);
  assert.match(path.detail, /request path is invalid/);
  const query = problem(await s.call("DELETE", "/v3/jobs?status=%00"), 422, "REQUEST_INVALID");
  assert.deepEqual(query.errors?.map((e) => e.path), ["status"]);
  assert.match(query.detail, /request query is invalid/);
});

test("DELETE /v3/jobs?age=99999999999w is 422 naming age (it was 500); the largest age is taken", async () => {
  const p = problem(await s.call("DELETE", "/v3/jobs?age=99999999999w"), 422, "REQUEST_INVALID");
  assert.deepEqual(p.errors?.map((e) => e.path), ["age"]);
  assert.equal((await s.call("DELETE", "/v3/jobs?age=5217000w")).statusCode, 204, "before 1970: nothing that old, nothing deleted, no catalog error");
});

test("Fastify's router errors are problems: a bad %-escape is 400, a path segment over the limit 414", async () => {
  assert.match(problem(await s.call("GET", "/v3/images/%zz"), 400, "BAD_REQUEST").detail, /%-escape that is not valid UTF-8/);
  problem(await s.call("GET", "/v3/remote-build-nodes/x%ED%A0%80y"), 400, "BAD_REQUEST");
  problem(await s.call("GET", `/v3/images/${"a".repeat(200)}`), 414, "URI_TOO_LONG");
});

test("GET and DELETE with Content-Type: application/json and no body are accepted (IMS does); POST with none is still 400", async () => {
  const headers = { authorization: `Bearer ${ADMIN}`, "content-type": "application/json" };
  assert.equal((await s.app.inject({ method: "GET", url: "/v3/jobs", headers })).statusCode, 200);
  const key = JSON.parse((await s.call("POST", "/v3/public-keys", { name: "gone", public_key: "ssh-ed25519 AAAA k" })).body) as { id: string };
  const del = await s.app.inject({ method: "DELETE", url: `/v3/public-keys/${key.id}`, headers, payload: "" });
  assert.equal(del.statusCode, 204, del.body);
  assert.equal((await s.app.inject({ method: "DELETE", url: "/v3/jobs?age=1d", headers, payload: "" })).statusCode, 204);
  assert.match(problem(await s.app.inject({ method: "POST", url: "/v3/public-keys", headers, payload: "" }), 400, "BAD_REQUEST").detail, /body is empty/);
  problem(await s.app.inject({ method: "DELETE", url: "/v3/jobs", headers, payload: "{" }), 400, "BAD_REQUEST");
});

test("a catalog failure is 503 with the code's summary and the request id, never the catalog's path", async () => {
  const broken = await startTestService();
  await broken.catalog.close();
  const r = await broken.call("GET", "/v3/recipes/6a6b2d4e-2f5c-4a9b-9b1e-0c6f7b0e8d11");
  assert.equal(r.statusCode, 503, r.body);
  assert.ok(!r.body.includes(broken.dir), r.body);
  const p = JSON.parse(r.body) as ProblemJson;
  assert.equal(p.code, "CATALOG_FAILED");
  assert.match(p.detail, /catalog database is unreachable.*request req-/);
  await broken.app.close();
  await broken.store.close();
});

/** Sends raw bytes to a listening server and returns what it answers before it closes. */
function raw(port: number, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, "127.0.0.1");
    let out = "";
    sock.on("data", (d: Buffer) => (out += d.toString()));
    sock.on("error", (e) => (out ? resolve(out) : reject(e)));
    sock.on("close", () => resolve(out));
    sock.end(request);
  });
}

function rawProblem(answer: string, status: number, code: string): ProblemJson {
  const [head, body] = answer.split("\r\n\r\n") as [string, string];
  assert.match(head, new RegExp(`^HTTP/1.1 ${status} `));
  assert.match(head, /content-type: application\/problem\+json/i);
  const p = JSON.parse(body) as ProblemJson;
  assert.equal(p.status, status);
  assert.equal(p.code, code);
  return p;
}

test("on a listening server: headers or a URL over Node's limit are 431, bytes that are not HTTP 400, router errors problems too", async () => {
  await s.app.listen({ host: "127.0.0.1", port: 0 });
  const port = (s.app.server.address() as AddressInfo).port;
  try {
    const auth = `Authorization: Bearer ${ADMIN}\r\n`;
    rawProblem(await raw(port, `GET /v3/images HTTP/1.1\r\nHost: x\r\n${auth}X-Big: ${"a".repeat(20_000)}\r\n\r\n`), 431, "HEADERS_TOO_LARGE");
    rawProblem(await raw(port, `GET /v3/images/${"a".repeat(20_000)} HTTP/1.1\r\nHost: x\r\n${auth}\r\n`), 431, "HEADERS_TOO_LARGE");
    rawProblem(await raw(port, "HELLO\r\n\r\n"), 400, "BAD_REQUEST");
    const url = `http://127.0.0.1:${port}`;
    const headers = { authorization: `Bearer ${ADMIN}` };
    const long = await fetch(`${url}/v3/images/${"a".repeat(200)}`, { headers });
    assert.equal(long.status, 414);
    assert.equal(((await long.json()) as ProblemJson).code, "URI_TOO_LONG");
    const bad = await fetch(`${url}/v3/images/%zz`, { headers });
    assert.equal(bad.status, 400);
    assert.match(bad.headers.get("content-type") ?? "", /^application\/problem\+json/);
    const empty = await fetch(`${url}/v3/jobs?age=1d`, { method: "DELETE", headers: { ...headers, "content-type": "application/json" } });
    assert.equal(empty.status, 204);
  } finally {
    await s.app.close();
  }
});
