/**
 * The MAAS boot source (docs/service.md#maas-boot-source): `/streams/v1/index.json`,
 * `index.sjson`, the products files and `/streams/keyring.gpg`, rendered from the catalog on each
 * request by src/streams/catalog-tree.ts (the layout `kiln streams publish` writes). Items are
 * streamed from the store object behind them: nothing is copied. Off unless `--streams` turns it
 * on; `open` needs no token (MAAS sends none), `token` needs any API token.
 */
import { createReadStream } from "node:fs";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import fp from "fastify-plugin";
import type { FastifyInstance } from "fastify";
import { parseS3Path } from "../catalog/objects.js";
import type { ImageRecord } from "../catalog/records.js";
import { apiError } from "./problem.js";
import type { ObjectStore } from "../store/object-store.js";
import { listable, renderCatalogTree, type TreeArtifact, type TreeImage } from "../streams/catalog-tree.js";
import { signedIndex } from "../streams/commit.js";
import { dumpJson } from "../streams/format.js";
import { DEFAULT_PREFIX } from "../streams/names.js";
import type { Signer } from "../streams/sign.js";
import { StreamDir } from "../streams/stream-dir.js";

export type StreamsAccess = "open" | "token" | "off";

export interface StreamsOptions {
  access: StreamsAccess;
  labels: string[];
  keep?: number;
  signer?: Signer;
  /** A stream folder kept by `kiln streams bootloaders`, whose bootloader products the tree lists. */
  bootloaders?: string;
}

/** An image's artifacts as the store holds them; images are immutable once linked, so cached by id and manifest etag. */
async function imageArtifacts(store: ObjectStore, image: ImageRecord): Promise<TreeArtifact[]> {
  const where = parseS3Path(image.link!.path);
  if (!where) return [];
  const chunks: Buffer[] = [];
  for await (const c of await store.get(where.bucket, where.key)) chunks.push(c as Buffer);
  const manifest = JSON.parse(Buffer.concat(chunks).toString("utf8")) as { artifacts?: Array<{ type: string; flavor?: string; link: { path: string } }> };
  const out: TreeArtifact[] = [];
  for (const a of manifest.artifacts ?? []) {
    const obj = parseS3Path(a.link.path);
    if (!obj) continue;
    const info = await store.head(obj.bucket, obj.key);
    // Without the sha256 publishing records, an item cannot be listed (MAAS checks it).
    if (!info.metadata.sha256) continue;
    out.push({ type: a.type, ...(a.flavor ? { flavor: a.flavor } : {}), bucket: obj.bucket, key: obj.key, sha256: info.metadata.sha256, size: info.size });
  }
  return out;
}

export const streamsPlugin = fp(
  async (app: FastifyInstance, opts: StreamsOptions) => {
    if (opts.access === "off") return;
    const config = { open: opts.access === "open" };
    const cache = new Map<string, TreeArtifact[]>();
    // Signed once per distinct text: re-signing happens only when the tree changed.
    const signed = new Map<string, string>();
    const clearsign = async (text: string) => {
      let sjson = signed.get(text);
      if (sjson === undefined) {
        sjson = await opts.signer!.clearsign(text);
        if (signed.size > 64) signed.clear();
        signed.set(text, sjson);
      }
      return sjson;
    };
    const tree = async () => {
      const images = (await app.catalog.list("images")).filter((i) => listable(i, opts.labels));
      const input: TreeImage[] = [];
      for (const image of images) {
        const k = `${image.id} ${image.link!.etag}`;
        let artifacts = cache.get(k);
        if (!artifacts) {
          artifacts = await imageArtifacts(app.store, image);
          cache.set(k, artifacts);
        }
        input.push({ image, artifacts });
      }
      // `updated` from the newest listed image, so an unchanged catalog renders the same bytes (and one signature).
      const newest = images.map((i) => i.created).sort().at(-1);
      const now = newest ? new Date(`${newest.slice(0, 19)}Z`) : new Date(0);
      // Read on every request: `kiln streams bootloaders` may have committed a new version since.
      const bootloaders = opts.bootloaders
        ? { root: opts.bootloaders, files: (await new StreamDir(opts.bootloaders).allProducts()).filter((f) => f.content_id.endsWith(":bootloader-download")) }
        : undefined;
      return renderCatalogTree(input, { labels: opts.labels, naming: { prefix: DEFAULT_PREFIX }, keep: opts.keep, now, pathPrefix: "streams/", ...(bootloaders ? { bootloaders } : {}) });
    };
    const json = "application/json";
    app.get("/streams/v1/index.json", { config, schema: { hide: true } }, async (_q, reply) => reply.type(json).send(dumpJson((await tree()).index)));
    if (opts.signer) {
      const signer = opts.signer;
      // The signer's throwaway GnuPG home (and its agent) goes with the app.
      app.addHook("onClose", async () => signer.close());
      app.get("/streams/v1/index.sjson", { config, schema: { hide: true } }, async (_q, reply) => reply.type("text/plain").send(await clearsign(dumpJson(signedIndex((await tree()).index)))));
      const dir = await mkdtemp(path.join(os.tmpdir(), "kiln-keyring-"));
      await signer.exportPublicKey(path.join(dir, "keyring.gpg"));
      const keyring = await readFile(path.join(dir, "keyring.gpg"));
      await rm(dir, { recursive: true, force: true });
      app.get("/streams/keyring.gpg", { config, schema: { hide: true } }, async (_q, reply) => reply.type("application/pgp-keys").send(keyring));
    }
    app.get("/streams/v1/:file", { config, schema: { hide: true } }, async (request, reply) => {
      const file = (request.params as { file: string }).file;
      const t = await tree();
      for (const [id, f] of t.products) {
        if (file === `${id}.json`) return reply.type(json).send(dumpJson(f));
        if (opts.signer && file === `${id}.sjson`) return reply.type("text/plain").send(await clearsign(dumpJson(f)));
      }
      throw apiError("NOT_FOUND", `no ${file} in the stream tree`);
    });
    app.get("/streams/*", { config, schema: { hide: true } }, async (request, reply) => {
      const rel = (request.params as { "*": string })["*"];
      const obj = (await tree()).objects.get(`streams/${rel}`);
      if (!obj) throw apiError("NOT_FOUND", `no item ${rel} in the stream tree (only images under a published label are served)`);
      if ("file" in obj) {
        const size = (await stat(obj.file)).size;
        return reply.type("application/octet-stream").header("content-length", size).send(createReadStream(obj.file));
      }
      const info = await app.store.head(obj.bucket, obj.key);
      return reply.type("application/octet-stream").header("content-length", info.size).send(await app.store.get(obj.bucket, obj.key));
    });
  },
  { name: "streams", dependencies: ["services"] },
);
