/**
 * /recipes. A recipe record links an archive in bucket `ims` (`recipes/<id>/recipe.tar.gz`).
 * IMS' flow is POST the record, upload the archive to S3, PATCH the link; Kiln adds
 * PUT /v3/recipes/{id}/archive, which receives the archive, checks it (safe to unpack; for
 * recipe_type kiln, a valid recipe.yaml once rendered with the record's template_dictionary) and
 * only then stores it (at `recipes/<id>/<upload id>/recipe.tar.gz`, one key per upload) and sets
 * the link, so a store without S3 access for operators (the filesystem default) works the same.
 */
import { createHash, randomUUID } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { lstat, mkdir, mkdtemp, readFile, readdir, readlink, rm } from "node:fs/promises";
import path from "node:path";
import { Transform, type Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { FastifyInstance } from "fastify";
import { IMS_BUCKET, purgeRecipeObject, recipeArchiveKey, recipeIdOfLink, s3Path, softDeleteRecipeObject, validateRecipeLink } from "../../catalog/objects.js";
import { imsTime, type ArtifactLink, type RecipeRecord } from "../../catalog/records.js";
import { distributionMismatch } from "../../jobs/create-job.js";
import { downloadObject } from "../../jobs/download.js";
import { RECIPE_FILE, unpackRecipeArchive } from "../../jobs/recipe-archive.js";
import { renderRecipeFile } from "../../jobs/recipe-template.js";
import { loadRecipe } from "../../recipe/load.js";
import { KilnError } from "../../errors.js";
import { apiError } from "../problem.js";
import { RecipeCreate, RecipePatch, idParam } from "../schemas.js";
import { cascadeOf, cascadeQuery, empty, notFound, requireBody, responses, sendJson, sendJsonList } from "./common.js";

type RecipeBody = Omit<RecipeRecord, "id" | "created">;
type RecipePatchBody = Partial<Pick<RecipeRecord, "arch" | "require_dkms" | "template_dictionary">> & { link?: ArtifactLink };

const ARCHIVE_TYPES = ["application/gzip", "application/x-gzip", "application/x-compressed-tar", "application/x-tar", "application/octet-stream"];

export async function recipeRoutes(app: FastifyInstance, opts: { version: 2 | 3 }): Promise<void> {
  const { catalog, store } = app;
  const v3 = opts.version === 3;
  const tags = [`recipes v${opts.version}`];
  const record = { $ref: "RecipeRecord#" };

  app.get("/recipes", { schema: { summary: "List recipes", tags, response: responses({ 200: { type: "array", items: record } }) } }, async (request, reply) =>
    sendJsonList(request, reply, catalog, "recipes", await catalog.listJson("recipes")),
  );

  app.post<{ Body: RecipeBody }>(
    "/recipes",
    { preValidation: requireBody, schema: { summary: "Register a recipe", tags, body: RecipeCreate, response: responses({ 201: record }, [400, 422]) } },
    async (request, reply) => {
      const b = request.body;
      const link = b.link ? { ...b.link, etag: b.link.etag ?? "" } : null;
      // A link's object must be under the recipe's own prefix (validateRecipeLink); a recipe
      // created with one (IMS clients may upload first) takes the id that prefix names, unless a
      // recipe, live or deleted, already has it.
      const named = link ? recipeIdOfLink(link.path) : undefined;
      const id = named && !(await catalog.get("recipes", named)) && !(await catalog.get("recipes", named, true)) ? named : randomUUID();
      if (link) await validateRecipeLink(store, await catalog.idsWithLink("recipes", link.path), link, id);
      const doc: RecipeRecord = {
        id,
        created: imsTime(),
        name: b.name,
        recipe_type: b.recipe_type,
        linux_distribution: b.linux_distribution,
        link,
        template_dictionary: b.template_dictionary,
        require_dkms: b.require_dkms,
        arch: b.arch,
      };
      return sendJson(reply, 201, await catalog.insert("recipes", doc));
    },
  );

  app.delete("/recipes", { schema: { summary: v3 ? "Soft-delete every recipe" : "Delete every recipe", tags, ...(v3 ? {} : { querystring: cascadeQuery }), response: responses({ 204: empty }) } }, async (request, reply) => {
    const cascade = v3 ? false : cascadeOf(request);
    for (const r of await catalog.list("recipes")) await deleteRecipe(r, cascade);
    return reply.code(204).send();
  });

  app.get<{ Params: { id: string } }>("/recipes/:id", { schema: { summary: "Describe a recipe", tags, params: idParam, response: responses({ 200: record }, [404]) } }, async (request, reply) => {
    const body = await catalog.getJson("recipes", request.params.id);
    if (!body) notFound("recipe", request.params.id);
    return sendJson(reply, 200, body);
  });

  app.patch<{ Params: { id: string }; Body: RecipePatchBody }>(
    "/recipes/:id",
    {
      preValidation: requireBody,
      schema: { summary: "Change a recipe: link (once), arch, require_dkms, template_dictionary", tags, params: idParam, body: RecipePatch, response: responses({ 200: record }, [400, 404, 409, 422]) },
    },
    async (request, reply) => {
      const b = request.body;
      const id = request.params.id;
      if (!(await catalog.get("recipes", id))) notFound("recipe", id);
      if (b.link) {
        const current = await catalog.get("recipes", id);
        if (current?.link && current.link.path !== b.link.path) throw conflict("recipe", id, current.link, b.link);
        if (!current?.link) await validateRecipeLink(store, (await catalog.idsWithLink("recipes", b.link.path)).filter((x) => x !== id), b.link, id);
      }
      const updated = await catalog.update("recipes", id, (doc) => {
        const next = { ...doc };
        if (b.link && !doc.link) next.link = { ...b.link, etag: b.link.etag ?? "" };
        else if (b.link && doc.link && doc.link.path !== b.link.path) throw conflict("recipe", id, doc.link, b.link);
        if (b.arch !== undefined) next.arch = b.arch;
        if (b.require_dkms !== undefined) next.require_dkms = b.require_dkms;
        if (b.template_dictionary !== undefined) next.template_dictionary = b.template_dictionary;
        return next;
      });
      if (!updated) notFound("recipe", id);
      return sendJson(reply, 200, updated);
    },
  );

  app.delete<{ Params: { id: string } }>(
    "/recipes/:id",
    {
      schema: {
        summary: v3 ? "Soft-delete a recipe: its archive moves to deleted/ (see /v3/deleted/recipes)" : "Delete a recipe (and its archive unless cascade=false)",
        tags,
        params: idParam,
        ...(v3 ? {} : { querystring: cascadeQuery }),
        response: responses({ 204: empty }, [404]),
      },
    },
    async (request, reply) => {
      const r = await catalog.get("recipes", request.params.id);
      if (!r) notFound("recipe", request.params.id);
      await deleteRecipe(r, v3 ? false : cascadeOf(request));
      return reply.code(204).send();
    },
  );

  async function deleteRecipe(r: RecipeRecord, cascade: boolean): Promise<void> {
    if (v3) {
      const link = await softDeleteRecipeObject(store, r);
      await catalog.markDeleted("recipes", r.id, { ...r, link, deleted: imsTime() });
    } else {
      if (cascade) await purgeRecipeObject(store, r);
      await catalog.remove("recipes", r.id);
    }
  }

  if (!v3) return;

  // --- Kiln: what the archive carries (read-only; the web console's recipe page) ---------------
  if (v3) {
    const fileSchema = {
      type: "object",
      required: ["path", "type", "size"],
      properties: {
        path: { type: "string", description: "relative to the archive's root, / separated" },
        type: { type: "string", enum: ["file", "dir", "symlink"] },
        size: { type: "integer", description: "bytes (0 for directories and links)" },
        target: { type: "string", description: "a symlink's target" },
      },
    };
    app.get<{ Params: { id: string } }>(
      "/recipes/:id/files",
      {
        schema: {
          summary: "The files the recipe's archive carries (Kiln)",
          description: "Unpacks the linked archive as a job would (the same checks) and lists its members, sorted by path. 409 when the recipe has no archive yet.",
          tags: ["kiln"],
          params: idParam,
          response: responses({ 200: { type: "object", required: ["recipe_id", "files"], properties: { recipe_id: { type: "string" }, files: { type: "array", items: fileSchema } } } }, [404, 409, 422]),
        },
      },
      async (request, reply) => {
        const id = request.params.id;
        const files = await withUnpackedArchive(id, async (dir) => listFiles(dir));
        return sendJson(reply, 200, { recipe_id: id, files });
      },
    );
    app.get<{ Params: { id: string; "*": string } }>(
      "/recipes/:id/files/*",
      {
        schema: {
          summary: "One regular file of the recipe's archive, e.g. recipe.yaml (Kiln)",
          description: "Served as text/plain. 404 for a path that is not a regular file of the archive (directories and symlinks are listed by /files, not served), 409 when the recipe has no archive yet.",
          tags: ["kiln"],
          params: idParam,
          produces: "text/plain",
          response: responses({ 200: { type: "string" } }, [404, 409, 422]),
        },
      },
      async (request, reply) => {
        const id = request.params.id;
        const want = request.params["*"];
        const body = await withUnpackedArchive(id, async (dir) => {
          // Looked up among the listed members, never joined onto the directory as given: no
          // `..`, absolute path or symlink can reach past the unpacked archive.
          const hit = (await listFiles(dir)).find((f) => f.path === want);
          if (!hit || hit.type !== "file") throw apiError("NOT_FOUND", `recipe ${id}: its archive has no regular file ${JSON.stringify(want)}${hit ? ` (it is a ${hit.type})` : ""}; GET /v3/recipes/${id}/files lists what it has`);
          return readFile(path.join(dir, ...hit.path.split("/")));
        });
        return reply.type("text/plain; charset=utf-8").send(body);
      },
    );
  }

  /** Fetches and unpacks the recipe's archive into scratch (checked as on upload), runs `use` on it, removes it. */
  async function withUnpackedArchive<T>(id: string, use: (dir: string) => Promise<T>): Promise<T> {
    const recipe = await catalog.get("recipes", id);
    if (!recipe) notFound("recipe", id);
    if (!recipe.link) throw apiError("CONFLICT", `recipe ${id} has no archive yet: upload it first (PUT /v3/recipes/${id}/archive)`);
    await mkdir(app.settings.scratchDir, { recursive: true });
    const scratch = await mkdtemp(path.join(app.settings.scratchDir, "files-"));
    try {
      const file = path.join(scratch, "recipe.tar.gz");
      await downloadObject(store, recipe.link.path, file, { what: `recipe ${id}: its archive`, signal: AbortSignal.timeout(60_000), expectEtag: recipe.link.etag, maxSize: app.settings.maxRecipeSize, maxSizeHint: "--max-recipe-size" }).catch((e: unknown) => {
        throw apiError("CONFLICT", (e as Error).message);
      });
      const unpacked = await unpackRecipeArchive(file, path.join(scratch, "recipe"), path.join(scratch, "check"), { maxUnpacked: app.settings.maxRecipeSize * 4 });
      return await use(unpacked.dir);
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
  }

  // --- Kiln: upload the archive ---------------------------------------------------------------
  app.register(async (upload) => {
    upload.addContentTypeParser(ARCHIVE_TYPES, (_request, payload, done) => done(null, payload));
    upload.put<{ Params: { id: string }; Body: Readable }>(
      "/recipes/:id/archive",
      {
        schema: {
          summary: "Upload the recipe's archive and set its link (Kiln)",
          description:
            "Body: the archive (tar.gz or tar) as application/gzip or application/octet-stream. It is checked before it is stored: no absolute paths, no `..`, no links out, no devices, size limits; a kiln recipe needs a recipe.yaml at its root that is valid once its {{ key }} placeholders are rendered with the record's template_dictionary (the archive is stored as sent). Then it is stored at s3://ims/recipes/<id>/<upload id>/recipe.tar.gz with its md5sum, and the record's link is set. 409 if the recipe already has a link; of concurrent uploads, one is linked and the others get 409 and leave nothing stored.",
          tags: ["kiln"],
          params: idParam,
          consumes: "application/gzip",
          response: responses({ 200: record }, [400, 404, 409, 413, 422]),
        },
      },
      async (request, reply) => {
        const id = request.params.id;
        const recipe = await catalog.get("recipes", id);
        if (!recipe) notFound("recipe", id);
        if (recipe.link) throw apiError("CONFLICT", `recipe ${id} already has an archive (${recipe.link.path}); recipes do not change: register a new recipe`);
        if (!request.body || typeof (request.body as Readable).pipe !== "function") throw apiError("BAD_REQUEST", `send the archive as the body, with Content-Type: ${ARCHIVE_TYPES.join(" or ")}`);
        await mkdir(app.settings.scratchDir, { recursive: true });
        const scratch = await mkdtemp(path.join(app.settings.scratchDir, "upload-"));
        try {
          const file = path.join(scratch, "recipe.tar.gz");
          const { size, md5 } = await receive(request.body, file, app.settings.maxRecipeSize);
          if (size === 0) throw apiError("BAD_REQUEST", "the archive is empty");
          const unpacked = await unpackRecipeArchive(file, path.join(scratch, "recipe"), path.join(scratch, "check"), { maxUnpacked: app.settings.maxRecipeSize * 4 });
          if (recipe.recipe_type === "kiln") {
            if (!unpacked.hasRecipeFile) throw apiError("REQUEST_INVALID", `recipe archive: no ${RECIPE_FILE} at its root; a kiln recipe archive is its folder packed with tar -czf recipe.tar.gz -C DIR .`, [{ path: "archive", message: `no ${RECIPE_FILE} at the root` }]);
            // Checked as a job will build it: rendered with the record's template_dictionary (in
            // this scratch copy only; the stored archive keeps its placeholders).
            const recipeFile = path.join(unpacked.dir, RECIPE_FILE);
            const loaded = await renderRecipeFile(recipeFile, recipe).then(() => loadRecipe(recipeFile)).catch((e: unknown) => {
              if (e instanceof KilnError) throw new KilnError("REQUEST_INVALID", e.message.split(unpacked.dir + "/").join(""), { problems: e.problems });
              throw e;
            });
            const mismatch = distributionMismatch(recipe, loaded.recipe.base);
            if (mismatch) throw apiError("REQUEST_INVALID", mismatch, [{ path: "linux_distribution", message: mismatch }]);
          }
          // Each upload writes its own key and the catalog's row lock picks the one that links:
          // concurrent uploads never overwrite the object the winner's record names, and a
          // loser removes only what it wrote itself.
          const key = recipeArchiveKey(id, randomUUID());
          const info = await store.put(IMS_BUCKET, key, createReadStream(file), { contentType: "application/x-compressed-tar", size, metadata: { md5sum: md5 } });
          const link: ArtifactLink = { path: s3Path(IMS_BUCKET, key), etag: info.etag, type: "s3" };
          let updated: RecipeRecord | undefined;
          try {
            updated = await catalog.update("recipes", id, (doc) => {
              if (doc.link) throw apiError("CONFLICT", `recipe ${id} got an archive (${doc.link.path}) while this one was uploaded; recipes do not change: register a new recipe`);
              return { ...doc, link };
            });
          } catch (e) {
            await store.delete(IMS_BUCKET, key);
            throw e;
          }
          if (!updated) {
            await store.delete(IMS_BUCKET, key);
            notFound("recipe", id);
          }
          return sendJson(reply, 200, updated);
        } finally {
          await rm(scratch, { recursive: true, force: true });
        }
      },
    );
  });
}

interface RecipeFile {
  path: string;
  type: "file" | "dir" | "symlink";
  size: number;
  target?: string;
}

/** The members of an unpacked archive, sorted by path (lstat: links are listed, not followed). */
async function listFiles(root: string): Promise<RecipeFile[]> {
  const out: RecipeFile[] = [];
  const walk = async (rel: string): Promise<void> => {
    for (const name of (await readdir(path.join(root, rel))).sort()) {
      const at = rel ? `${rel}/${name}` : name;
      const st = await lstat(path.join(root, at));
      if (st.isSymbolicLink()) out.push({ path: at, type: "symlink", size: 0, target: await readlink(path.join(root, at)) });
      else if (st.isDirectory()) {
        out.push({ path: at, type: "dir", size: 0 });
        await walk(at);
      } else if (st.isFile()) out.push({ path: at, type: "file", size: st.size });
    }
  };
  await walk("");
  return out;
}

function conflict(kind: string, id: string, have: ArtifactLink, want: ArtifactLink): KilnError {
  return apiError("CONFLICT", `${kind} ${id} already links ${have.path}; a link is set once (asked for ${want.path}); create a new ${kind} instead`);
}

/** Streams a request body to a file, counting and hashing; 413 past `limit`. */
async function receive(body: Readable, file: string, limit: number): Promise<{ size: number; md5: string }> {
  const md5 = createHash("md5");
  let size = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _e, done) {
      size += chunk.length;
      if (size > limit) return done(new KilnError("TOO_LARGE", `the archive is larger than ${limit} bytes (--max-recipe-size)`));
      md5.update(chunk);
      done(null, chunk);
    },
  });
  await pipeline(body, counter, createWriteStream(file));
  return { size, md5: md5.digest("hex") };
}
