/**
 * PUT /v3/recipes/{id}/archive: a good archive is stored with its md5sum and linked; hostile or
 * broken ones are refused with 4xx and nothing is stored.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { gzipSync } from "node:zlib";
import { startTestService, type TestService } from "../helpers/service.js";
import { writeTar, type TarEntry } from "../helpers/tar-writer.js";
import { IMS_BUCKET, parseS3Path } from "../../src/catalog/objects.js";

let s: TestService;
before(async () => {
  s = await startTestService({ maxRecipeSize: 64 * 1024 });
});
after(async () => {
  await s.close();
});

const RECIPE = "apiVersion: kiln/v1\nname: tiny\nbase: {debian: bookworm, variant: minbase}\nfiles: [{path: /etc/motd, source: ./motd}]\nkernels: [{flavor: generic, package: linux-image-amd64}]\n";

async function newRecipe(extra: Record<string, unknown> = {}): Promise<string> {
  const r = await s.call("POST", "/v3/recipes", { name: "t", recipe_type: "kiln", linux_distribution: "debian12", ...extra });
  return (JSON.parse(r.body) as { id: string }).id;
}

function upload(id: string, body: Buffer, type = "application/gzip") {
  return s.app.inject({ method: "PUT", url: `/v3/recipes/${id}/archive`, headers: { authorization: "Bearer admin-token", "content-type": type }, payload: body });
}

const good: TarEntry[] = [
  { name: "./", type: "dir" },
  { name: "./recipe.yaml", type: "file", content: RECIPE },
  { name: "./motd", type: "file", content: "hello\n" },
  { name: "./link-to-motd", type: "symlink", target: "motd" },
];

test("a recipe folder's archive is checked, stored at recipes/<id>/<upload id>/recipe.tar.gz with its md5sum, and linked", async () => {
  const id = await newRecipe();
  const body = gzipSync(writeTar(good));
  const r = await upload(id, body);
  assert.equal(r.statusCode, 200, r.body);
  const rec = JSON.parse(r.body) as { link: { path: string; etag: string; type: string } };
  assert.match(rec.link.path, new RegExp(`^s3://ims/recipes/${id}/[0-9a-f-]{36}/recipe\\.tar\\.gz$`));
  assert.equal(rec.link.type, "s3");
  const info = await s.store.head(IMS_BUCKET, parseS3Path(rec.link.path)!.key);
  assert.equal(rec.link.etag, info.etag, "the record carries the stored object's etag");
  assert.equal(info.metadata.md5sum, createHash("md5").update(body).digest("hex"));
  assert.equal(info.size, body.length);
  assert.equal((await upload(id, body)).statusCode, 409, "recipes do not change");
  assert.equal((await upload("6a6b2d4e-2f5c-4a9b-9b1e-0c6f7b0e8d11", body)).statusCode, 404);
});

test("a plain tar is accepted; a kiwi-ng archive needs no recipe.yaml", async () => {
  assert.equal((await upload(await newRecipe(), writeTar(good), "application/x-tar")).statusCode, 200);
  const kiwi = await newRecipe({ recipe_type: "kiwi-ng", linux_distribution: "sles15" });
  assert.equal((await upload(kiwi, gzipSync(writeTar([{ name: "config.xml", type: "file", content: "<image/>" }])))).statusCode, 200);
});

test("hostile and broken archives are refused with 4xx, and nothing is stored", async () => {
  const bomb = Buffer.alloc(10 * 1024 * 1024); // 10 MiB of zeros gzips to ~10 KiB
  const cases: Array<[string, Buffer, number, RegExp]> = [
    ["dot-dot", gzipSync(writeTar([...good, { name: "../evil", type: "file", content: "x" }])), 422, /climbs out/],
    ["absolute", gzipSync(writeTar([...good, { name: "/etc/evil", type: "file", content: "x" }])), 422, /absolute path/],
    ["symlink out", gzipSync(writeTar([...good, { name: "up", type: "symlink", target: "../../etc" }])), 422, /outside the root/],
    ["absolute symlink", gzipSync(writeTar([...good, { name: "shadow", type: "symlink", target: "/etc/shadow" }])), 422, /absolute target/],
    ["write through link", gzipSync(writeTar([...good, { name: "d", type: "symlink", target: "motd" }, { name: "d/x", type: "file", content: "x" }])), 422, /under/],
    ["device", gzipSync(writeTar([...good, { name: "null", type: "char", major: 1, minor: 3 }])), 422, /device/],
    ["gzip bomb", gzipSync(writeTar([...good, { name: "zeros", type: "file", content: bomb }])), 413, /unpacks to more than/],
    ["too big", Buffer.concat([gzipSync(writeTar(good)), Buffer.alloc(70 * 1024)]), 413, /larger than/],
    ["not an archive", Buffer.from("hello, this is not a tarball at all"), 422, /neither gzip nor tar/],
    ["truncated gzip", gzipSync(writeTar(good)).subarray(0, 100), 422, /cannot be inflated|tar cannot read/],
    ["no recipe.yaml", gzipSync(writeTar([{ name: "motd", type: "file", content: "x" }])), 422, /no recipe.yaml/],
    ["bad recipe", gzipSync(writeTar([{ name: "recipe.yaml", type: "file", content: RECIPE.replace("name: tiny", "name: BAD NAME") }, { name: "motd", type: "file", content: "x" }])), 422, /name/],
    ["missing referenced file", gzipSync(writeTar([{ name: "recipe.yaml", type: "file", content: RECIPE }])), 422, /motd/],
    ["wrong distribution", gzipSync(writeTar([{ name: "recipe.yaml", type: "file", content: RECIPE.replace("bookworm", "trixie") }, { name: "motd", type: "file", content: "x" }])), 422, /debian13/],
    ["empty", Buffer.alloc(0), 400, /empty|archive/],
  ];
  for (const [what, body, code, re] of cases) {
    const id = await newRecipe();
    const r = await upload(id, body);
    assert.equal(r.statusCode, code, `${what}: ${r.body}`);
    assert.match(r.body, re, what);
    assert.equal((JSON.parse((await s.call("GET", `/v3/recipes/${id}`)).body) as { link: unknown }).link, null, what);
    assert.deepEqual(await s.store.list(IMS_BUCKET, `recipes/${id}/`), [], what);
  }
  const wrongType = await s.app.inject({ method: "PUT", url: `/v3/recipes/${await newRecipe()}/archive`, headers: { authorization: "Bearer admin-token", "content-type": "text/plain" }, payload: "x" });
  assert.equal(wrongType.statusCode, 400);
});

test("recipes naming host files are refused by the upload check, at the field, without saying whether the file exists", async () => {
  // The service's own secrets, where an uploader would aim: the data dir's tokens.json and the store's signing key.
  await writeFile(path.join(s.dir, "tokens.json"), '{"version":1,"tokens":[]}\n');
  await mkdir(path.join(s.dir, "objects/.kiln"), { recursive: true });
  await writeFile(path.join(s.dir, "objects/.kiln/signing-key"), "secret", { flag: "a" });
  const head = "apiVersion: kiln/v1\nname: tiny\nbase: {debian: bookworm, variant: minbase}\nkernels: [{flavor: generic, package: linux-image-amd64}]\n";
  const withRecipe = (yaml: string, more: TarEntry[] = []) => gzipSync(writeTar([{ name: "recipe.yaml", type: "file", content: head + yaml }, { name: "motd", type: "file", content: "x" }, ...more]));
  const refused = async (body: Buffer, field: string, written: string) => {
    const id = await newRecipe();
    const r = await upload(id, body);
    assert.equal(r.statusCode, 422, `${written}: ${r.body}`);
    const p = JSON.parse(r.body) as { type: string; detail: string; errors: Array<{ path: string; message: string }> };
    assert.match(r.headers["content-type"] as string, /application\/problem\+json/);
    assert.deepEqual(p.errors, [{ path: field, message: `${JSON.stringify(written)} is outside the recipe's folder; put the file in the recipe's folder and name it relative to it` }], written);
    assert.doesNotMatch(r.body, /does not exist|not a regular file|cannot be read/, written);
    assert.deepEqual(await s.store.list(IMS_BUCKET, `recipes/${id}/`), [], "nothing stored");
    return p.detail.split(JSON.stringify(written)).join("P");
  };
  await refused(withRecipe("files: [{path: /etc/x, source: /etc/shadow}]\n"), "files[0].source", "/etc/shadow");
  await refused(withRecipe("files: [{path: /etc/x, source: ../../etc/hostname}]\n"), "files[0].source", "../../etc/hostname");
  await refused(withRecipe(`files: [{path: /etc/x, source: ${path.join(s.dir, "tokens.json")}}]\n`), "files[0].source", path.join(s.dir, "tokens.json"));
  // The archive is unpacked in <scratch>/upload-*/recipe: three levels up is the data dir.
  await refused(withRecipe("files: [{path: /etc/x, source: ../../../tokens.json}]\n"), "files[0].source", "../../../tokens.json");
  await refused(withRecipe(`repositories: [{name: r, suite: stable, key: ${path.join(s.dir, "objects/.kiln/signing-key")}}]\n`), "repositories[0].key", path.join(s.dir, "objects/.kiln/signing-key"));
  await refused(withRecipe("caCertificates: [/etc/ssl/certs/ca-certificates.crt]\n"), "caCertificates[0]", "/etc/ssl/certs/ca-certificates.crt");
  await refused(withRecipe("scripts: [{name: s, source: /etc/passwd}]\n"), "scripts[0].source", "/etc/passwd");
  // No oracle: a host file that exists and one that does not get the same answer.
  const there = await refused(withRecipe(`files: [{path: /etc/x, source: ${path.join(s.dir, "tokens.json")}}]\n`), "files[0].source", path.join(s.dir, "tokens.json"));
  const gone = await refused(withRecipe(`files: [{path: /etc/x, source: ${path.join(s.dir, "no-such-file")}}]\n`), "files[0].source", path.join(s.dir, "no-such-file"));
  assert.equal(there, gone);
  // A link chain that reads as staying inside (d/d/d/.. is "d/d" as text) but that the kernel
  // resolves out of the folder, since d -> .: the archive check resolves links as the kernel does
  // (and the loader would refuse it again, see recipe-paths.test.ts).
  const chain = withRecipe("files: [{path: /etc/x, source: ./up/../tokens.json}]\n", [
    { name: "d", type: "symlink", target: "." },
    { name: "up", type: "symlink", target: "d/d/d/../.." },
  ]);
  const id = await newRecipe();
  const r = await upload(id, chain);
  assert.equal(r.statusCode, 422, r.body);
  assert.deepEqual((JSON.parse(r.body) as { errors: unknown[] }).errors, [{ path: "archive", message: 'symlink "up" -> "d/d/d/../.." resolves outside the root' }]);
  assert.deepEqual(await s.store.list(IMS_BUCKET, `recipes/${id}/`), []);
});

test("8 concurrent uploads of different archives: one 200, seven 409, and the stored archive is the 200's (5 trials)", async () => {
  for (let trial = 0; trial < 5; trial++) {
    const id = await newRecipe();
    const bodies = Array.from({ length: 8 }, (_, i) => gzipSync(writeTar([...good.slice(0, 2), { name: "./motd", type: "file", content: `upload ${i} of trial ${trial}\n` }])));
    const answers = await Promise.all(bodies.map((b) => upload(id, b)));
    const codes = answers.map((r) => r.statusCode).sort();
    assert.deepEqual(codes, [200, 409, 409, 409, 409, 409, 409, 409], `trial ${trial}: ${answers.map((r) => r.body).join("\n")}`);
    const winner = answers.findIndex((r) => r.statusCode === 200);
    const link = (JSON.parse(answers[winner]!.body) as { link: { path: string; etag: string } }).link;
    assert.deepEqual((JSON.parse((await s.call("GET", `/v3/recipes/${id}`)).body) as { link: unknown }).link, link, "the record links what the 200 said");
    const where = parseS3Path(link.path)!;
    const stored = Buffer.concat(await (await s.store.get(where.bucket, where.key)).toArray());
    assert.ok(stored.equals(bodies[winner]!), `trial ${trial}: the stored archive is the 200's (upload ${winner})`);
    assert.equal((await s.store.head(where.bucket, where.key)).etag, link.etag);
    assert.deepEqual((await s.store.list(IMS_BUCKET, `recipes/${id}/`)).map((o) => o.key), [where.key], "the refused uploads left nothing behind");
  }
});

test("GET /v3/recipes/{id}/files lists what the archive carries; /files/{path} serves a regular file of it and nothing else", async () => {
  const id = await newRecipe();
  const get = (url: string, token = "admin-token") => s.app.inject({ method: "GET", url, headers: { authorization: `Bearer ${token}` } });
  const before = await get(`/v3/recipes/${id}/files`);
  assert.equal(before.statusCode, 409, "no archive yet");
  assert.match((JSON.parse(before.body) as { detail: string }).detail, /has no archive yet: upload it first/);
  assert.equal((await upload(id, gzipSync(writeTar([...good, { name: "./files/", type: "dir" }, { name: "./files/sshd.conf", type: "file", content: "PermitRootLogin no\n" }])))).statusCode, 200);
  const list = await get(`/v3/recipes/${id}/files`, "reader-token");
  assert.equal(list.statusCode, 200, list.body);
  assert.deepEqual(JSON.parse(list.body), {
    recipe_id: id,
    files: [
      { path: "files", type: "dir", size: 0 },
      { path: "files/sshd.conf", type: "file", size: 19 },
      { path: "link-to-motd", type: "symlink", size: 0, target: "motd" },
      { path: "motd", type: "file", size: 6 },
      { path: "recipe.yaml", type: "file", size: RECIPE.length },
    ],
  });
  const yaml = await get(`/v3/recipes/${id}/files/recipe.yaml`, "reader-token");
  assert.equal(yaml.statusCode, 200);
  assert.equal(yaml.body, RECIPE);
  assert.match(String(yaml.headers["content-type"]), /^text\/plain/);
  assert.equal((await get(`/v3/recipes/${id}/files/files/sshd.conf`)).body, "PermitRootLogin no\n");
  // The attacks: out of the archive by .., an absolute path, through its symlink.
  for (const [p, why] of [["..%2F..%2F..%2F..%2Fetc%2Fpasswd", /no regular file/], ["files/..%2F..%2F..%2Fetc%2Fhostname", /no regular file/], ["%2Fetc%2Fpasswd", /no regular file/], ["link-to-motd", /it is a symlink/], ["files", /it is a dir/]] as const) {
    const r = await get(`/v3/recipes/${id}/files/${p}`);
    assert.equal(r.statusCode, 404, `${p}: ${r.body}`);
    const problem = JSON.parse(r.body) as { code: string; detail: string };
    assert.equal(problem.code, "NOT_FOUND");
    assert.match(problem.detail, why, p);
  }
  assert.equal((await get(`/v3/recipes/6a6b2d4e-2f5c-4a9b-9b1e-0c6f7b0e8d11/files`)).statusCode, 404);
});
