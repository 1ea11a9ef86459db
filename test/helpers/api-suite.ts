/**
 * The IMS record routes, as one suite that runs against any service: through inject() in unit
 * tests, and against a real `kiln serve` process (PGlite + filesystem, or PostgreSQL + S3) in
 * integration tests. Fields and defaults, status codes, RFC 7807 problems, PATCH rules, soft
 * delete / undelete / hard delete with their objects, remote build nodes, v2 and /apis/ims, OpenAPI.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { gzipSync } from "node:zlib";
import { BOOT_IMAGES_BUCKET, IMS_BUCKET, parseS3Path } from "../../src/catalog/objects.js";
import { ObjectNotFound, type ObjectStore } from "../../src/store/object-store.js";
import { writeTar } from "./tar-writer.js";

export interface ApiResponse {
  statusCode: number;
  headers: Record<string, string | string[] | number | undefined>;
  body: string;
}

export interface ApiTarget {
  /** The object store the service uses (tests put and look at objects directly). */
  store: ObjectStore;
  adminToken: string;
  /** A read-only token, when the target has one (writes must be refused with 403). */
  readerToken?: string;
  request(r: { method: string; url: string; headers?: Record<string, string>; payload?: string | Buffer }): Promise<ApiResponse>;
  /** With the admin token unless `token` (null: none); JSON body when given. */
  call(method: string, url: string, body?: unknown, token?: string | null): Promise<ApiResponse>;
}

/** call() on top of request(). */
export function callWith(t: Omit<ApiTarget, "call">): ApiTarget["call"] {
  return (method, url, body, token = t.adminToken) =>
    t.request({
      method,
      url,
      headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body !== undefined ? { "content-type": "application/json" } : {}) },
      ...(body !== undefined ? { payload: typeof body === "string" ? body : JSON.stringify(body) } : {}),
    });
}

/** A target over HTTP (a real `kiln serve`). */
export function httpTarget(base: string, store: ObjectStore, adminToken: string, readerToken?: string): ApiTarget {
  const t: Omit<ApiTarget, "call"> = {
    store,
    adminToken,
    readerToken,
    async request(r) {
      const res = await fetch(base + r.url, { method: r.method, headers: r.headers, body: r.payload });
      const headers: Record<string, string> = {};
      res.headers.forEach((v, k) => (headers[k] = v));
      return { statusCode: res.status, headers, body: await res.text() };
    },
  };
  return { ...t, call: callWith(t) };
}

const TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$/;

function json<T = Record<string, unknown>>(r: { body: string }): T {
  return JSON.parse(r.body) as T;
}

export function defineRecordSuite(target: () => ApiTarget): void {
  const s = {
    get store() {
      return target().store;
    },
    get adminToken() {
      return target().adminToken;
    },
    get readerToken() {
      return target().readerToken;
    },
    call: (...a: Parameters<ApiTarget["call"]>) => target().call(...a),
    request: (...a: Parameters<ApiTarget["request"]>) => target().request(...a),
  };

  /** Uploads artifacts and a manifest for `id` as a job would; returns the manifest's s3 path. */
  async function putImageObjects(id: string, opts: { roots?: number } = {}): Promise<string> {
    const artifacts = [];
    const files: Array<[string, string, string]> = [
      ["rootfs", "application/vnd.cray.image.rootfs.squashfs", "squash"],
      ["kernel", "application/vnd.cray.image.kernel", "vmlinuz"],
      ["initrd", "application/vnd.cray.image.initrd", "initrd"],
    ];
    for (let i = 1; i < (opts.roots ?? 1); i++) files.push([`rootfs${i}`, "application/vnd.cray.image.rootfs.squashfs", "more"]);
    if (opts.roots === 0) files.shift();
    for (const [name, type, content] of files) {
      const info = await s.store.put(BOOT_IMAGES_BUCKET, `${id}/${name}`, content, { metadata: { md5sum: createHash("md5").update(content).digest("hex") } });
      artifacts.push({ link: { path: `s3://${BOOT_IMAGES_BUCKET}/${id}/${name}`, etag: info.etag, type: "s3" }, md5: createHash("md5").update(content).digest("hex"), type });
    }
    await s.store.put(BOOT_IMAGES_BUCKET, `${id}/manifest.json`, JSON.stringify({ version: "1.0", created: "2025-01-01 00:00:00", artifacts }));
    return `s3://${BOOT_IMAGES_BUCKET}/${id}/manifest.json`;
  }

  async function exists(bucket: string, key: string): Promise<boolean> {
    try {
      await s.store.head(bucket, key);
      return true;
    } catch (e) {
      if (e instanceof ObjectNotFound) return false;
      throw e;
    }
  }

  test("version, health and the OpenAPI document answer without a token; data does not", async () => {
    const doc = await s.call("GET", "/openapi.json", undefined, null);
    assert.equal(doc.statusCode, 200, doc.body);
    assert.equal(json<{ openapi: string }>(doc).openapi, "3.0.3");
    assert.equal((await s.call("GET", "/v3/recipes", undefined, null)).statusCode, 401, "records still need a token");
    assert.equal((await s.call("POST", "/openapi.json", {}, null)).statusCode, 401, "only the GET is open");
    for (const url of ["/version", "/apis/ims/version"]) {
      const r = await s.call("GET", url, undefined, null);
      assert.equal(r.statusCode, 200);
      assert.match(json<{ version: string }>(r).version, /^\d+\.\d+\.\d+/);
    }
    for (const url of ["/healthz/ready", "/healthz/live", "/apis/ims/healthz/ready"]) {
      const r = await s.call("GET", url, undefined, null);
      assert.equal(r.statusCode, 200, url);
      assert.deepEqual(json(r), {});
    }
  });

  test("public keys: create with server fields, list, describe, soft delete, undelete, hard delete", async () => {
    const r = await s.call("POST", "/v3/public-keys", { name: "me", public_key: "ssh-ed25519 AAAAC3 me@host\n" });
    assert.equal(r.statusCode, 201);
    const k = json<{ id: string; created: string; name: string; public_key: string }>(r);
    assert.match(k.id, /^[0-9a-f-]{36}$/);
    assert.match(k.created, TIME);
    assert.equal(k.public_key, "ssh-ed25519 AAAAC3 me@host\n");
    assert.deepEqual(Object.keys(k).sort(), ["created", "id", "name", "public_key"]);
    assert.ok(json<Array<{ id: string }>>(await s.call("GET", "/v3/public-keys")).some((x) => x.id === k.id));
    assert.equal((await s.call("GET", `/apis/ims/v3/public-keys/${k.id}`)).statusCode, 200);
    assert.equal((await s.call("PATCH", `/v3/public-keys/${k.id}`, { name: "x" })).statusCode, 405, "IMS has no PATCH for public keys");

    assert.equal((await s.call("DELETE", `/v3/public-keys/${k.id}`)).statusCode, 204);
    assert.equal((await s.call("GET", `/v3/public-keys/${k.id}`)).statusCode, 404);
    const d = json<{ id: string; deleted: string }>(await s.call("GET", `/v3/deleted/public-keys/${k.id}`));
    assert.equal(d.id, k.id);
    assert.match(d.deleted, TIME);
    assert.equal((await s.call("PATCH", `/v3/deleted/public-keys/${k.id}`, { operation: "undelete" })).statusCode, 204);
    const back = json<Record<string, unknown>>(await s.call("GET", `/v3/public-keys/${k.id}`));
    assert.equal(back.deleted, undefined);
    assert.equal((await s.call("DELETE", `/v3/public-keys/${k.id}`)).statusCode, 204);
    assert.equal((await s.call("DELETE", `/v3/deleted/public-keys/${k.id}`)).statusCode, 204);
    assert.equal((await s.call("GET", `/v3/deleted/public-keys/${k.id}`)).statusCode, 404);
  });

  test("validation: 400 for empty or malformed bodies, 422 with per-field errors for unknown or bad fields", async () => {
    for (const body of [undefined, "", "{}"]) {
      const r = await s.request({ method: "POST", url: "/v3/recipes", headers: { authorization: `Bearer ${s.adminToken}`, ...(body !== undefined ? { "content-type": "application/json" } : {}) }, payload: body });
      assert.equal(r.statusCode, 400, `body ${JSON.stringify(body)}: ${r.body}`);
      assert.equal(r.headers["content-type"], "application/problem+json; charset=utf-8");
      const p = json<{ type: string; title: string; status: number; detail: string }>(r);
      assert.equal(p.type, "about:blank");
      assert.equal(p.status, 400);
      assert.equal(p.title, "Bad Request");
    }
    const bad = await s.call("POST", "/v3/recipes", '{"name": "x", ');
    assert.equal(bad.statusCode, 400);
    assert.match(json<{ detail: string }>(bad).detail, /not valid JSON/);

    const recipesBefore = json<unknown[]>(await s.call("GET", "/v3/recipes")).length;
    const r = await s.call("POST", "/v3/recipes", { name: "", recipe_type: "rpm", linux_distribution: "debian12", colour: "red", id: "00000000-0000-4000-8000-000000000000" });
    assert.equal(r.statusCode, 422);
    const p = json<{ code: string; errors: Array<{ path: string; message: string }> }>(r);
    assert.equal(p.code, "REQUEST_INVALID");
    const paths = p.errors.map((e) => e.path).sort();
    assert.deepEqual(paths, ["colour", "id", "name", "recipe_type"]);
    assert.match(p.errors.find((e) => e.path === "recipe_type")!.message, /kiwi-ng.*kiln/);
    assert.equal(p.errors.find((e) => e.path === "colour")!.message, "unknown field");
    assert.equal(json<unknown[]>(await s.call("GET", "/v3/recipes")).length, recipesBefore, "nothing stored");

    const big = await s.call("POST", "/v3/public-keys", { name: "big", public_key: "x".repeat(2 * 1024 * 1024) });
    assert.equal(big.statusCode, 413);
    assert.equal(json<{ code: string }>(big).code, "TOO_LARGE");
  });

  test("unknown routes are 404 and wrong methods 405, as problem details", async () => {
    const r = await s.call("GET", "/v3/nothing");
    assert.equal(r.statusCode, 404);
    assert.equal(json<{ code: string }>(r).code, "NOT_FOUND");
    const m = await s.call("PUT", "/v3/images");
    assert.equal(m.statusCode, 405);
    assert.match(String(m.headers.allow), /GET.*POST/);
    assert.equal((await s.call("GET", "/remote-build-nodes")).statusCode, 404, "IMS never served the root alias");
    assert.equal((await s.call("GET", "/v3/images/not-a-uuid")).statusCode, 404);
    assert.equal((await s.call("GET", "/v3/images/6a6b2d4e-2f5c-4a9b-9b1e-0c6f7b0e8d11")).statusCode, 404);
  });

  test("recipes: defaults, link validation, PATCH rules (409 once set), soft delete moves the archive", async () => {
    const r = await s.call("POST", "/v3/recipes", { name: "r1", recipe_type: "kiwi-ng", linux_distribution: "sles15" });
    assert.equal(r.statusCode, 201);
    const rec = json<Record<string, unknown> & { id: string }>(r);
    assert.deepEqual({ link: rec.link, template_dictionary: rec.template_dictionary, require_dkms: rec.require_dkms, arch: rec.arch }, { link: null, template_dictionary: [], require_dkms: true, arch: "x86_64" });

    const missing = await s.call("PATCH", `/v3/recipes/${rec.id}`, { link: { path: `s3://ims/recipes/${rec.id}/recipe.tar.gz`, type: "s3" } });
    assert.equal(missing.statusCode, 422, "link object must exist");
    await s.store.put(IMS_BUCKET, `recipes/${rec.id}/recipe.tar.gz`, "tgz");
    const p = await s.call("PATCH", `/v3/recipes/${rec.id}`, { link: { path: `s3://ims/recipes/${rec.id}/recipe.tar.gz`, type: "s3" }, arch: "aarch64", template_dictionary: [{ key: "a", value: "b" }] });
    assert.equal(p.statusCode, 200, p.body);
    const patched = json<Record<string, unknown> & { link: { path: string; etag: string } }>(p);
    assert.equal(patched.arch, "aarch64");
    assert.deepEqual(patched.template_dictionary, [{ key: "a", value: "b" }]);
    assert.equal(patched.link.etag, "");
    assert.equal((await s.call("PATCH", `/v3/recipes/${rec.id}`, { link: { path: `s3://ims/recipes/${rec.id}/recipe.tar.gz`, type: "s3" } })).statusCode, 200, "same link: no-op");
    const c = await s.call("PATCH", `/v3/recipes/${rec.id}`, { link: { path: "s3://ims/other", type: "s3" } });
    assert.equal(c.statusCode, 409);
    assert.equal(json<{ code: string }>(c).code, "CONFLICT");
    assert.equal((await s.call("PATCH", `/v3/recipes/${rec.id}`, { name: "renamed" })).statusCode, 422, "name is not patchable");
    assert.equal((await s.call("PATCH", `/v3/recipes/${rec.id}`, {})).statusCode, 400);

    const dup = await s.call("POST", "/v3/recipes", { name: "r2", recipe_type: "kiln", linux_distribution: "debian12", link: { path: `s3://ims/recipes/${rec.id}/recipe.tar.gz`, type: "s3" } });
    assert.equal(dup.statusCode, 422, "a link path belongs to one recipe");

    assert.equal((await s.call("DELETE", `/v3/recipes/${rec.id}`)).statusCode, 204);
    assert.equal(await exists(IMS_BUCKET, `recipes/${rec.id}/recipe.tar.gz`), false);
    assert.equal(await exists(IMS_BUCKET, `deleted/recipes/${rec.id}/recipe.tar.gz`), true);
    const d = json<{ link: { path: string }; arch: string }>(await s.call("GET", `/v3/deleted/recipes/${rec.id}`));
    assert.equal(d.link.path, `s3://ims/deleted/recipes/${rec.id}/recipe.tar.gz`);
    assert.equal(d.arch, "aarch64", "deleted records keep arch (IMS once lost it)");
    assert.equal((await s.call("PATCH", `/v3/deleted/recipes/${rec.id}`, { operation: "restore" })).statusCode, 422);
    assert.equal((await s.call("PATCH", `/v3/deleted/recipes/${rec.id}`, { operation: "undelete" })).statusCode, 204);
    assert.equal(await exists(IMS_BUCKET, `recipes/${rec.id}/recipe.tar.gz`), true);
    assert.equal(json<{ link: { path: string } }>(await s.call("GET", `/v3/recipes/${rec.id}`)).link.path, `s3://ims/recipes/${rec.id}/recipe.tar.gz`);
  });

  test("images: manifest validation on link, metadata operations, soft delete writes deleted_manifest.json, undelete restores", async () => {
    const r = await s.call("POST", "/v3/images", { name: "img", metadata: { key: "tier", value: "gold" } });
    assert.equal(r.statusCode, 201);
    const img = json<{ id: string; metadata: Record<string, string>; link: null; arch: string }>(r);
    assert.deepEqual(img.metadata, { tier: "gold" }, "IMS reads {key, value} as one tag");
    assert.equal(img.arch, "x86_64");

    const noRoot = await putImageObjects(`${img.id}-bad`, { roots: 0 });
    assert.equal((await s.call("PATCH", `/v3/images/${img.id}`, { link: { path: noRoot, type: "s3" } })).statusCode, 400, "exactly one rootfs");
    await s.store.put(BOOT_IMAGES_BUCKET, `${img.id}/v2.json`, JSON.stringify({ version: "2.0", artifacts: [] }));
    assert.equal((await s.call("PATCH", `/v3/images/${img.id}`, { link: { path: `s3://boot-images/${img.id}/v2.json`, type: "s3" } })).statusCode, 422);

    const manifest = await putImageObjects(img.id);
    const p = await s.call("PATCH", `/v3/images/${img.id}`, { link: { path: manifest, type: "s3", etag: "x" }, metadata: { operation: "set", key: "os", value: "debian" } });
    assert.equal(p.statusCode, 200, p.body);
    assert.deepEqual(json<{ metadata: object }>(p).metadata, { tier: "gold", os: "debian" });
    assert.equal((await s.call("PATCH", `/v3/images/${img.id}`, { metadata: { operation: "remove", key: "tier" } })).statusCode, 200);
    assert.equal((await s.call("PATCH", `/v3/images/${img.id}`, { metadata: { operation: "remove", key: "nope" } })).statusCode, 200, "removing a missing tag is a no-op");
    assert.equal((await s.call("PATCH", `/v3/images/${img.id}`, { metadata: { operation: "set", key: "k" } })).statusCode, 422);
    assert.equal((await s.call("PATCH", `/v3/images/${img.id}`, { link: { path: noRoot, type: "s3" } })).statusCode, 409);

    const other = json<{ id: string }>(await s.call("POST", "/v3/images", { name: "copy" }));
    assert.equal((await s.call("PATCH", `/v3/images/${other.id}`, { link: { path: manifest, type: "s3" } })).statusCode, 422, "a manifest belongs to one image");

    assert.equal((await s.call("DELETE", `/v3/images/${img.id}`)).statusCode, 204);
    for (const k of ["rootfs", "kernel", "initrd", "manifest.json"]) {
      assert.equal(await exists(BOOT_IMAGES_BUCKET, `${img.id}/${k}`), false, k);
      assert.equal(await exists(BOOT_IMAGES_BUCKET, `deleted/${img.id}/${k}`), true, k);
    }
    const d = json<{ link: { path: string; etag: string }; metadata: object }>(await s.call("GET", `/v3/deleted/images/${img.id}`));
    assert.equal(d.link.path, `s3://boot-images/deleted/${img.id}/deleted_manifest.json`);
    assert.deepEqual(d.metadata, { os: "debian" }, "deleted records keep their tags");
    const dm = JSON.parse((await (await s.store.get(BOOT_IMAGES_BUCKET, `deleted/${img.id}/deleted_manifest.json`)).toArray()).join("")) as { artifacts: Array<{ type: string; link: { path: string } }> };
    assert.deepEqual(
      dm.artifacts.map((a) => a.type),
      ["application/vnd.cray.image.rootfs.squashfs", "application/vnd.cray.image.kernel", "application/vnd.cray.image.initrd", "application/vnd.cray.image.manifest"],
    );

    assert.equal((await s.call("PATCH", `/v3/deleted/images/${img.id}`, { operation: "undelete" })).statusCode, 204);
    const back = json<{ link: { path: string } }>(await s.call("GET", `/v3/images/${img.id}`));
    assert.equal(back.link.path, manifest);
    assert.equal(await exists(BOOT_IMAGES_BUCKET, `${img.id}/rootfs`), true);
    assert.equal(await exists(BOOT_IMAGES_BUCKET, `deleted/${img.id}/deleted_manifest.json`), false);

    // Soft delete all, then hard delete all from deleted/: objects go too.
    assert.equal((await s.call("DELETE", "/v3/images")).statusCode, 204);
    assert.equal(json<unknown[]>(await s.call("GET", "/v3/images")).length, 0);
    assert.equal((await s.call("DELETE", "/v3/deleted/images")).statusCode, 204);
    assert.equal(json<unknown[]>(await s.call("GET", "/v3/deleted/images")).length, 0);
    assert.equal(await exists(BOOT_IMAGES_BUCKET, `deleted/${img.id}/rootfs`), false);
    assert.equal(await exists(BOOT_IMAGES_BUCKET, `deleted/${img.id}/manifest.json`), false);
  });

  test("a recipe links only objects under its own prefix in bucket ims: cascade delete cannot reach an image's rootfs", async () => {
    const img = json<{ id: string }>(await s.call("POST", "/v3/images", { name: "victim" }));
    const manifest = await putImageObjects(img.id);
    assert.equal((await s.call("PATCH", `/v3/images/${img.id}`, { link: { path: manifest, type: "s3" } })).statusCode, 200);
    const rootfs = `s3://${BOOT_IMAGES_BUCKET}/${img.id}/rootfs`;
    const other = json<{ id: string }>(await s.call("POST", "/v3/recipes", { name: "other", recipe_type: "kiwi-ng", linux_distribution: "sles15" }));
    await s.store.put(IMS_BUCKET, `recipes/${other.id}/recipe.tar.gz`, "theirs");
    const refused = (r: ApiResponse, what: string) => {
      assert.equal(r.statusCode, 422, `${what}: ${r.body}`);
      const p = json<{ errors: Array<{ path: string; message: string }> }>(r);
      assert.equal(p.errors[0]?.path, "link.path", what);
      assert.match(p.errors[0]!.message, /^must name an object under s3:\/\/ims\/recipes\/[0-9a-f-]{36}\/$/, what);
    };
    // The attack: link a recipe to the image's rootfs, then delete it with cascade (v2).
    refused(await s.call("POST", "/v2/recipes", { name: "evil", recipe_type: "kiwi-ng", linux_distribution: "sles15", link: { path: rootfs, type: "s3" } }), "POST to a rootfs");
    const evil = json<{ id: string }>(await s.call("POST", "/v2/recipes", { name: "evil", recipe_type: "kiwi-ng", linux_distribution: "sles15" }));
    for (const path of [rootfs, `s3://ims/recipes/${other.id}/recipe.tar.gz`, `s3://ims/recipes/${evil.id}/../${other.id}/recipe.tar.gz`, `s3://ims/deleted/recipes/${other.id}/recipe.tar.gz`, `s3://ims/recipes/${evil.id}`]) {
      refused(await s.call("PATCH", `/v2/recipes/${evil.id}`, { link: { path, type: "s3" } }), `PATCH to ${path}`);
    }
    assert.equal((await s.call("DELETE", `/v2/recipes/${evil.id}`)).statusCode, 204, "cascade is v2's default");
    assert.equal(await exists(BOOT_IMAGES_BUCKET, `${img.id}/rootfs`), true, "the image's rootfs survives");
    assert.equal(await exists(IMS_BUCKET, `recipes/${other.id}/recipe.tar.gz`), true, "the other recipe's archive survives");
    // Its own prefix is fine; a recipe created with a link (upload first, IMS-style) takes the id the prefix names.
    const own = json<{ id: string }>(await s.call("POST", "/v3/recipes", { name: "own", recipe_type: "kiwi-ng", linux_distribution: "sles15" }));
    await s.store.put(IMS_BUCKET, `recipes/${own.id}/recipe.tar.gz`, "mine");
    assert.equal((await s.call("PATCH", `/v3/recipes/${own.id}`, { link: { path: `s3://ims/recipes/${own.id}/recipe.tar.gz`, type: "s3" } })).statusCode, 200);
    const fresh = "3f0c8a52-6f4e-4d0b-9a51-2f7d1c9e8b40";
    await s.store.put(IMS_BUCKET, `recipes/${fresh}/recipe.tar.gz`, "uploaded first");
    const created = await s.call("POST", "/v3/recipes", { name: "first", recipe_type: "kiwi-ng", linux_distribution: "sles15", link: { path: `s3://ims/recipes/${fresh}/recipe.tar.gz`, type: "s3" } });
    assert.equal(created.statusCode, 201, created.body);
    assert.equal(json<{ id: string }>(created).id, fresh);
    refused(await s.call("POST", "/v3/recipes", { name: "again", recipe_type: "kiwi-ng", linux_distribution: "sles15", link: { path: `s3://ims/recipes/${own.id}/recipe.tar.gz`, type: "s3" } }), "POST into an existing recipe's prefix");
    for (const id of [own.id, fresh, other.id]) await s.call("DELETE", `/v2/recipes/${id}`);
    await s.call("DELETE", `/v2/images/${img.id}`);
  });

  test("v2 and unversioned routes hard-delete, with cascade deciding about objects", async () => {
    for (const prefix of ["/v2", "", "/apis/ims/v2", "/apis/ims"]) {
      const img = json<{ id: string }>(await s.call("POST", `${prefix}/images`, { name: `v2${prefix}` }));
      const manifest = await putImageObjects(img.id);
      assert.equal((await s.call("PATCH", `${prefix}/images/${img.id}`, { link: { path: manifest, type: "s3" } })).statusCode, 200);
      const cascade = prefix.endsWith("v2");
      assert.equal((await s.call("DELETE", `${prefix}/images/${img.id}${cascade ? "" : "?cascade=false"}`)).statusCode, 204);
      assert.equal((await s.call("GET", `/v3/deleted/images/${img.id}`)).statusCode, 404, "no soft delete in v2");
      assert.equal(await exists(BOOT_IMAGES_BUCKET, `${img.id}/rootfs`), !cascade, `${prefix} cascade=${cascade}`);
    }
    assert.equal((await s.call("GET", "/v2/deleted/images")).statusCode, 404, "v2 has no deleted/ routes");
  });

  test("recipe upload checks recipe.yaml rendered with the record's template_dictionary; the archive is stored as sent", async () => {
    const recipeYaml = ["apiVersion: kiln/v1", "name: {{ name }}", "base: { debian: {{ suite }}, variant: minbase }", "packages: [systemd]", "files: [{ path: /etc/motd, content: {{ motd }} }]", "kernels: [{ flavor: generic, package: linux-image-amd64 }]", ""].join("\n");
    const archive = gzipSync(writeTar([{ name: "recipe.yaml", type: "file", content: recipeYaml }]));
    const upload = async (dictionary: Array<{ key: string; value: string }>) => {
      const rec = json<{ id: string }>(await s.call("POST", "/v3/recipes", { name: "templated", recipe_type: "kiln", linux_distribution: "debian12", template_dictionary: dictionary }));
      const r = await s.request({ method: "PUT", url: `/v3/recipes/${rec.id}/archive`, headers: { authorization: `Bearer ${s.adminToken}`, "content-type": "application/gzip" }, payload: archive });
      return { id: rec.id, r };
    };
    const motd = { key: "motd", value: "site: lab-1 # managed\n[not, a, list]\n" };

    const ok = await upload([{ key: "name", value: "lab-web" }, { key: "suite", value: "bookworm" }, motd]);
    assert.equal(ok.r.statusCode, 200, ok.r.body);
    const okKey = parseS3Path(json<{ link: { path: string } }>(ok.r).link.path)!.key;
    const stored = Buffer.concat(await (await s.store.get(IMS_BUCKET, okKey)).toArray());
    assert.ok(stored.equals(archive), "the archive is stored as sent, placeholders and all");

    // The rendered value is what the check sees: bullseye contradicts linux_distribution debian12.
    const wrong = await upload([{ key: "name", value: "lab-web" }, { key: "suite", value: "bullseye" }, motd]);
    assert.equal(wrong.r.statusCode, 422);
    assert.match(json<{ detail: string }>(wrong.r).detail, /bootstraps Debian bullseye/);

    const missing = await upload([{ key: "name", value: "lab-web" }, motd]);
    assert.equal(missing.r.statusCode, 422);
    const p = json<{ detail: string; errors: Array<{ path: string }> }>(missing.r);
    assert.match(p.detail, new RegExp(`^recipe ${missing.id}: recipe\\.yaml uses \\{\\{ suite \\}\\}, which the recipe's template_dictionary does not define \\(line 3: \\{\\{ suite \\}\\}\\); it defines name, motd`));
    assert.equal(p.errors[0]!.path, "template_dictionary");
    assert.equal(json<{ link: unknown }>(await s.call("GET", `/v3/recipes/${missing.id}`)).link, null, "nothing linked");
  });

  test("remote build nodes (v3 only): register, list in order, describe, status, hard delete; 400/422/404 as IMS", async () => {
    assert.equal((await s.call("DELETE", "/v3/remote-build-nodes")).statusCode, 204);
    // x3000… is an xname that resolves nowhere here; 127.0.0.1 is a host whose port 22 may or may not answer.
    for (const xname of ["x3000c0s1b0n0", "127.0.0.1", "x3000c0s2b0n0"]) {
      const r = await s.call("POST", "/v3/remote-build-nodes", { xname });
      assert.equal(r.statusCode, 201, r.body);
      assert.deepEqual(json(r), { xname }, "IMS returns the record: xname and nothing else");
    }
    const again = await s.call("POST", "/apis/ims/v3/remote-build-nodes", { xname: "x3000c0s1b0n0" });
    assert.equal(again.statusCode, 201, "IMS replaces a known xname (a dict keyed by xname)");
    const list = json<Array<{ xname: string }>>(await s.call("GET", "/v3/remote-build-nodes"));
    assert.deepEqual(list, [{ xname: "x3000c0s1b0n0" }, { xname: "127.0.0.1" }, { xname: "x3000c0s2b0n0" }], "insertion order, no duplicate");
    assert.deepEqual(json(await s.call("GET", "/apis/ims/v3/remote-build-nodes/127.0.0.1")), { xname: "127.0.0.1" });

    for (const body of [undefined, "{}"]) {
      const r = await s.request({ method: "POST", url: "/v3/remote-build-nodes", headers: { authorization: `Bearer ${s.adminToken}`, ...(body ? { "content-type": "application/json" } : {}) }, payload: body });
      assert.equal(r.statusCode, 400, `body ${JSON.stringify(body)}`);
      assert.equal(r.headers["content-type"], "application/problem+json; charset=utf-8");
    }
    for (const [body, field] of [[{ xname: 42 }, "xname"], [{ xname: "" }, "xname"], [{ xname: "x1", colour: "red" }, "colour"]] as const) {
      const r = await s.call("POST", "/v3/remote-build-nodes", body);
      assert.equal(r.statusCode, 422, JSON.stringify(body));
      assert.ok(json<{ errors: Array<{ path: string }> }>(r).errors.some((e) => e.path === field), `${JSON.stringify(body)}: errors[] names ${field}`);
    }
    assert.equal((await s.call("GET", "/v3/remote-build-nodes/x9999c0s0b0n0")).statusCode, 404);
    assert.equal((await s.call("GET", "/v3/remote-build-nodes/status/x9999c0s0b0n0")).statusCode, 404);
    assert.equal((await s.call("DELETE", "/v3/remote-build-nodes/x9999c0s0b0n0")).statusCode, 404);
    assert.equal((await s.call("PATCH", "/v3/remote-build-nodes/127.0.0.1", { xname: "y" })).statusCode, 405, "IMS has no PATCH for remote build nodes");
    for (const url of ["/remote-build-nodes", "/v2/remote-build-nodes", "/apis/ims/remote-build-nodes", "/remote-build-nodes/status"]) {
      assert.equal((await s.call("GET", url)).statusCode, 404, `${url}: v3 only`);
    }

    // Status: one object per node (an object, not an array, for one xname, as the IMS server does).
    // Kiln runs no jobs on these nodes and must say so; what it reports on SSH is a real connection attempt.
    const one = json<Record<string, unknown>>(await s.call("GET", "/v3/remote-build-nodes/status/x3000c0s1b0n0"));
    assert.deepEqual(Object.keys(one).sort(), ["ableToRunJobs", "kiln", "nodeArch", "numCurrentJobs", "podmanStatus", "sshStatus", "xname"]);
    assert.equal(one.xname, "x3000c0s1b0n0");
    assert.equal(one.ableToRunJobs, false);
    assert.equal(one.numCurrentJobs, -1, "IMS' value for unknown");
    assert.equal(one.nodeArch, "Unknown");
    assert.match(String(one.sshStatus), /^Unable to connect to node\. Error: /, "an xname that resolves nowhere is not reachable");
    assert.match((one.kiln as { reason: string }).reason, /kiln worker/);
    const all = json<Array<{ xname: string; sshStatus: string; ableToRunJobs: boolean }>>(await s.call("GET", "/apis/ims/v3/remote-build-nodes/status"));
    assert.deepEqual(all.map((x) => x.xname), ["x3000c0s1b0n0", "127.0.0.1", "x3000c0s2b0n0"]);
    assert.ok(all.every((x) => x.ableToRunJobs === false));
    const { createConnection } = await import("node:net");
    const refused = await new Promise<boolean>((resolve) => {
      const c = createConnection({ host: "127.0.0.1", port: 22 });
      c.once("connect", () => {
        c.destroy();
        resolve(false);
      });
      c.once("error", (e: NodeJS.ErrnoException) => resolve(e.code === "ECONNREFUSED"));
    });
    const local = all[1]!.sshStatus;
    if (refused) assert.match(local, /^Unable to connect to node\. Error: connect ECONNREFUSED/, "nothing listens on 127.0.0.1:22 here");
    else assert.match(local, /^(SSH server answered \(SSH-2\.0-.*\); login not attempted|Unable to connect to node\. Error: )/, "the status says what a connection to port 22 finds");

    if (s.readerToken) {
      assert.equal((await s.call("GET", "/v3/remote-build-nodes", undefined, s.readerToken)).statusCode, 200);
      assert.equal((await s.call("GET", "/v3/remote-build-nodes/status/127.0.0.1", undefined, s.readerToken)).statusCode, 200);
      for (const [method, url, body] of [["POST", "/v3/remote-build-nodes", { xname: "x1" }], ["DELETE", "/v3/remote-build-nodes/127.0.0.1", undefined], ["DELETE", "/v3/remote-build-nodes", undefined]] as const) {
        const r = await s.call(method, url, body, s.readerToken);
        assert.equal(r.statusCode, 403, `${method} ${url} with a read-only token`);
        assert.equal(json<{ code: string }>(r).code, "FORBIDDEN");
      }
    }
    assert.equal((await s.call("GET", "/v3/remote-build-nodes", undefined, null)).statusCode, 401);

    assert.equal((await s.call("DELETE", "/v3/remote-build-nodes/127.0.0.1")).statusCode, 204);
    assert.equal((await s.call("GET", "/v3/remote-build-nodes/127.0.0.1")).statusCode, 404, "hard delete");
    assert.equal((await s.call("GET", "/v3/deleted/remote-build-nodes")).statusCode, 404, "no deleted/ for remote build nodes");
    assert.equal((await s.call("DELETE", "/v3/remote-build-nodes")).statusCode, 204);
    assert.deepEqual(json(await s.call("GET", "/v3/remote-build-nodes")), []);
    assert.deepEqual(json(await s.call("GET", "/v3/remote-build-nodes/status")), []);
  });

  test("the OpenAPI document lists every route at the root with its schemas, Kiln's additions included", async () => {
    const r = await s.call("GET", "/openapi.json");
    assert.equal(r.statusCode, 200);
    const doc = json<{ openapi: string; paths: Record<string, Record<string, { tags?: string[]; requestBody?: unknown }>>; components: { schemas: Record<string, unknown> } }>(r);
    assert.equal(doc.openapi, "3.0.3");
    for (const p of ["/v3/recipes", "/v3/recipes/{id}", "/v3/images/{id}", "/v3/jobs/{id}/log", "/v3/jobs/{id}/cancel", "/v3/recipes/{id}/archive", "/v3/deleted/images/{id}", "/v2/jobs", "/recipes", "/version", "/healthz/ready"]) {
      assert.ok(doc.paths[p], p);
    }
    const nodes = doc.paths["/v3/remote-build-nodes"]!;
    assert.deepEqual(Object.keys(nodes).sort(), ["delete", "get", "post"]);
    assert.deepEqual(Object.keys(doc.paths["/v3/remote-build-nodes/{xname}"]!).sort(), ["delete", "get"]);
    assert.ok(doc.paths["/v3/remote-build-nodes/status"]!.get);
    assert.ok(doc.paths["/v3/remote-build-nodes/status/{xname}"]!.get);
    assert.ok(nodes.post!.requestBody);
    assert.ok(!doc.paths["/remote-build-nodes"] && !doc.paths["/v2/remote-build-nodes"], "v3 only");
    assert.ok(doc.components.schemas.RemoteBuildNodeRecord && doc.components.schemas.RemoteBuildNodeStatus);
    assert.ok(!Object.keys(doc.paths).some((p) => p.startsWith("/apis/ims")));
    assert.ok(doc.paths["/v3/jobs/{id}/log"]!.get!.tags!.includes("kiln"));
    assert.ok(doc.paths["/v3/recipes"]!.post!.requestBody);
    assert.ok(doc.components.schemas.JobRecord);
    assert.ok(!JSON.stringify(doc).includes('"type":["'), "no JSON Schema type arrays in OpenAPI 3.0");
  });
}
