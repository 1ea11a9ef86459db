/**
 * The create job renders recipe.yaml with the recipe record's template_dictionary before it loads
 * it (IMS' fetch-recipe templating). Run for real on a PGlite catalog and a filesystem store, up
 * to the checks that need no build: a rendered suite that contradicts linux_distribution ends the
 * job there, naming the rendered value; a placeholder without a key ends it naming the
 * placeholder and the recipe.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomUUID } from "node:crypto";
import { gzipSync } from "node:zlib";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Catalog } from "../../src/catalog/catalog.js";
import { IMS_BUCKET, s3Path } from "../../src/catalog/objects.js";
import { imsTime, type JobRecord, type RecipeRecord } from "../../src/catalog/records.js";
import { runCreateJob } from "../../src/jobs/create-job.js";
import type { JobContext } from "../../src/jobs/runner.js";
import type { ObjectStore } from "../../src/store/object-store.js";
import { openStore } from "../../src/store/open-store.js";
import { writeTar } from "../helpers/tar-writer.js";

let dir: string;
let catalog: Catalog;
let store: ObjectStore;
before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "kiln-create-tpl-"));
  catalog = await Catalog.open(undefined, dir);
  store = await openStore(`file://${path.join(dir, "objects")}`);
  await store.ensureBucket(IMS_BUCKET);
});
after(async () => {
  await store.close();
  await catalog.close();
  await rm(dir, { recursive: true, force: true });
});

const RECIPE = ["apiVersion: kiln/v1", "name: {{ name }}", "base: { debian: {{ suite }}, variant: minbase }", "kernels: [{ flavor: generic, package: linux-image-amd64 }]", ""].join("\n");

async function runWith(dictionary: RecipeRecord["template_dictionary"], afterLink?: (key: string) => Promise<void>): Promise<{ error: unknown; log: string[]; recipeId: string }> {
  const id = randomUUID();
  const archive = gzipSync(writeTar([{ name: "recipe.yaml", type: "file", content: RECIPE }]));
  const key = `recipes/${id}/recipe.tar.gz`;
  const info = await store.put(IMS_BUCKET, key, archive, { metadata: { md5sum: createHash("md5").update(archive).digest("hex") } });
  const recipe: RecipeRecord = { id, created: imsTime(), name: "t", recipe_type: "kiln", linux_distribution: "debian12", link: { path: s3Path(IMS_BUCKET, key), etag: info.etag, type: "s3" }, template_dictionary: dictionary, require_dkms: false, arch: "x86_64" };
  await catalog.insert("recipes", recipe);
  await afterLink?.(key);
  const log: string[] = [];
  const ctx = {
    job: { id: randomUUID(), job_type: "create", artifact_id: id, image_root_archive_name: "t", arch: "x86_64" } as JobRecord,
    catalog,
    store,
    log: { line: (s: string) => log.push(s), event: () => {}, flush: async () => {} },
    signal: new AbortController().signal,
    workDir: path.join(dir, "work", randomUUID()),
    cacheDir: path.join(dir, "cache"),
    verify: "never",
    maxRecipeSize: 1 << 20,
    setStatus: async () => {},
    setKiln: async () => {},
    setResult: async () => {},
  } as unknown as JobContext;
  const error = await runCreateJob(ctx).then(
    () => undefined,
    (e: unknown) => e,
  );
  return { error, log, recipeId: id };
}

test("the job builds recipe.yaml as rendered: a rendered suite that contradicts the record stops it, naming the value", async () => {
  const { error, log } = await runWith([
    { key: "name", value: "lab-web" },
    { key: "suite", value: "bullseye" },
  ]);
  assert.match((error as Error).message, /says linux_distribution debian12, but its recipe\.yaml bootstraps Debian bullseye/);
  assert.ok(log.some((l) => /recipe\.yaml: rendered 2 placeholder\(s\) with template_dictionary key\(s\) name, suite/.test(l)), log.join("\n"));
});

test("a placeholder the template_dictionary lacks ends the job naming the placeholder and the recipe", async () => {
  const { error, recipeId } = await runWith([{ key: "name", value: "lab-web" }]);
  assert.match((error as Error).message, new RegExp(`^recipe ${recipeId}: recipe\\.yaml uses \\{\\{ suite \\}\\}, which the recipe's template_dictionary does not define \\(line 3: \\{\\{ suite \\}\\}\\)`));
});

test("an archive replaced after it was linked is refused by the record's etag, even with a matching md5sum", async () => {
  const other = gzipSync(writeTar([{ name: "recipe.yaml", type: "file", content: RECIPE.replace("{{ suite }}", "bookworm") }]));
  const { error } = await runWith([{ key: "name", value: "x" }], async (key) => {
    // Written straight to the store with its own (true) md5sum: only the record's etag tells.
    await store.put(IMS_BUCKET, key, other, { metadata: { md5sum: createHash("md5").update(other).digest("hex") } });
  });
  assert.match((error as Error).message, /has etag \w+, but the record links etag \w+: the object was replaced after it was linked/);
});
