/**
 * PUT /v3/recipes/{id}/archive: a good archive is stored with its md5sum and linked; hostile or
 * broken ones are refused with 4xx and nothing is stored.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { gzipSync } from "node:zlib";
import { startTestService, type TestService } from "../helpers/service.js";
import { writeTar, type TarEntry } from "../helpers/tar-writer.js";
import { IMS_BUCKET } from "../../src/catalog/objects.js";

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

test("a recipe folder's archive is checked, stored at recipes/<id>/recipe.tar.gz with its md5sum, and linked", async () => {
  const id = await newRecipe();
  const body = gzipSync(writeTar(good));
  const r = await upload(id, body);
  assert.equal(r.statusCode, 200, r.body);
  const rec = JSON.parse(r.body) as { link: { path: string; etag: string; type: string } };
  assert.equal(rec.link.path, `s3://ims/recipes/${id}/recipe.tar.gz`);
  assert.equal(rec.link.type, "s3");
  const info = await s.store.head(IMS_BUCKET, `recipes/${id}/recipe.tar.gz`);
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
