/**
 * The web console's serving through inject(): /ui/ and its files need no token and carry the
 * strict CSP; a browser's GET / is sent to /ui/ while API clients get what they got before; the
 * built page has no inline script or style the CSP would have to allow; GET /v3/whoami tells a
 * token's role and nothing to a request without one.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { ADMIN, READER, startTestService, type TestService } from "../helpers/service.js";
import { UI_CSP } from "../../src/api/ui.js";

let s: TestService;
before(async () => {
  s = await startTestService();
});
after(async () => {
  await s.close();
});

const get = (url: string, headers: Record<string, string> = {}) => s.app.inject({ method: "GET", url, headers });

test("/ui/ and its script and styles are served with no token, each with the strict CSP", async () => {
  for (const [url, type] of [
    ["/ui/", /^text\/html/],
    ["/ui", /^text\/html/],
    ["/ui/app.js", /^text\/javascript/],
    ["/ui/app.css", /^text\/css/],
  ] as const) {
    const r = await get(url);
    assert.equal(r.statusCode, 200, `${url}: ${r.body.slice(0, 200)}`);
    assert.match(String(r.headers["content-type"]), type, url);
    assert.equal(r.headers["content-security-policy"], UI_CSP, url);
    assert.equal(r.headers["x-content-type-options"], "nosniff");
    assert.equal(r.headers["x-frame-options"], "DENY");
  }
  const csp = UI_CSP.split("; ");
  for (const d of ["default-src 'self'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'"]) assert.ok(csp.includes(d), `CSP has ${d}`);
  assert.doesNotMatch(UI_CSP, /unsafe-inline|unsafe-eval|\*|https?:/, "no inline code, no eval, no other origin");
});

test("the page the CSP covers has no inline script, style or event handler", async () => {
  const html = (await get("/ui/")).body;
  for (const m of html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/g)) {
    assert.match(m[1]!, /\bsrc="\/ui\/[^"]+"/, "every script is a file of this service");
    assert.equal(m[2]!.trim(), "", "no inline script body");
  }
  assert.doesNotMatch(html, /<style\b|\sstyle=|\son[a-z]+=/i);
  assert.doesNotMatch(html, /https?:\/\//, "no CDN");
});

test("a file the bundle does not have is a 404 problem, and no path reaches outside it", async () => {
  for (const url of ["/ui/nope.js", "/ui/..%2Fpackage.json", "/ui/%2e%2e/%2e%2e/package.json", "/ui/../../package.json"]) {
    const r = await get(url);
    assert.ok(r.statusCode === 404 || r.statusCode === 401, `${url}: ${r.statusCode}`);
    assert.doesNotMatch(r.body, /"name":\s*"kiln"/, url);
  }
  const r = await get("/ui/nope.js");
  assert.equal(r.statusCode, 404);
  assert.equal(JSON.parse(r.body).code, "NOT_FOUND");
});

test("a browser asking for / is sent to /ui/; an API client's GET / is answered as before", async () => {
  const browser = await get("/", { accept: "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8" });
  assert.equal(browser.statusCode, 302);
  assert.equal(browser.headers.location, "/ui/");
  const api = await get("/", { accept: "application/json", authorization: `Bearer ${ADMIN}` });
  assert.notEqual(api.statusCode, 302);
  assert.equal(api.statusCode, 404, "no route at / for the API: as before the console");
  assert.match(String(api.headers["content-type"]), /^application\/problem\+json/);
  const anyClient = await get("/", { accept: "*/*" });
  assert.equal(anyClient.statusCode, 401, "curl's */* is no browser: the token check answers, as before");
  const v = await get("/version", { accept: "text/html" });
  assert.equal(v.statusCode, 200, "only / itself redirects");
});

test("GET /v3/whoami says the token's role; without a valid token it is 401", async () => {
  const admin = await s.call("GET", "/v3/whoami");
  assert.equal(admin.statusCode, 200);
  assert.deepEqual(JSON.parse(admin.body), { role: "admin" });
  assert.deepEqual(JSON.parse((await s.call("GET", "/v3/whoami", undefined, READER)).body), { role: "read-only" });
  const none = await s.call("GET", "/v3/whoami", undefined, null);
  assert.equal(none.statusCode, 401);
  assert.equal(JSON.parse(none.body).code, "UNAUTHORIZED");
  assert.equal((await s.call("GET", "/v3/whoami", undefined, "kiln_not_a_token")).statusCode, 401);
  assert.equal((await s.call("GET", "/apis/ims/v3/whoami", undefined, READER)).statusCode, 200, "under /apis/ims as every route");
});
