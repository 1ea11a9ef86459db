/**
 * schema/recipe.schema.json and docs/recipe.md are generated from the schema and committed; this
 * fails when either drifts from the code, and checks that what they show is itself valid.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { stringify } from "yaml";
import { RECIPE_DOCS_FILE, renderRecipeDocs } from "../../src/recipe/docs.js";
import { RECIPE_SCHEMA_FILE, recipeJsonSchema, recipeJsonSchemaText } from "../../src/recipe/json-schema.js";
import { parseRecipe } from "../../src/recipe/load.js";

const REPO = fileURLToPath(new URL("../../../", import.meta.url));
const REGENERATE = `npx tsc -p . && node -e 'import("./dist/src/recipe/docs.js").then((m) => m.writeRecipeArtifacts("."))'`;

/** Fails naming the first line that differs and how to regenerate, rather than dumping both files. */
async function assertCommitted(file: string, generated: string): Promise<void> {
  const text = await readFile(path.join(REPO, file), "utf8").catch(() => undefined);
  if (text === generated) return;
  const [was, now] = [text?.split("\n") ?? [], generated.split("\n")];
  const line = now.findIndex((l, i) => l !== was[i]);
  const where = text === undefined ? "is missing" : `differs at line ${line + 1}: ${JSON.stringify(was[line])} should be ${JSON.stringify(now[line])}`;
  assert.fail(`${file} ${where}; regenerate it: ${REGENERATE}`);
}

void test(`${RECIPE_SCHEMA_FILE} matches the schema in code`, () => assertCommitted(RECIPE_SCHEMA_FILE, recipeJsonSchemaText()));

void test(`${RECIPE_DOCS_FILE} matches the schema in code`, () => assertCommitted(RECIPE_DOCS_FILE, renderRecipeDocs()));

void test("the JSON Schema names itself and describes every field", () => {
  const schema = recipeJsonSchema();
  assert.equal(schema.$id, "urn:kiln:recipe:v1");
  assert.equal(schema.title, "Kiln recipe (kiln/v1)");
  const undescribed: string[] = [];
  const visit = (node: unknown, at: string): void => {
    if (typeof node !== "object" || node === null) return;
    const n = node as { properties?: Record<string, { description?: string }>; items?: unknown; oneOf?: unknown[] };
    for (const [key, child] of Object.entries(n.properties ?? {})) {
      if (!child.description) undescribed.push(`${at}${key}`);
      visit(child, `${at}${key}.`);
    }
    visit(n.items, at);
    n.oneOf?.forEach((o) => visit(o, at));
  };
  visit(schema, "");
  assert.deepEqual(undescribed, []);
});

void test("the page's full example is a valid recipe", () => {
  const page = renderRecipeDocs();
  const full = page.slice(page.indexOf("## Full example"));
  const yaml = /```yaml\n([\s\S]*?)```/.exec(full)?.[1];
  assert.ok(yaml, "no full example on the page");
  const r = parseRecipe(yaml, "docs/recipe.md", "/srv");
  assert.equal(r.name, "bookworm-server");
});

void test("every example in the schema is valid in a recipe", () => {
  const schema = recipeJsonSchema() as { properties: Record<string, { examples?: unknown[] }> };
  const base = { apiVersion: "kiln/v1", name: "x", base: { debian: "bookworm" }, kernels: [{ flavor: "generic", package: "linux-image-amd64" }] };
  // upgrade needs a repository to upgrade from; disk needs qcow2 among the outputs.
  const context = {
    repositories: [{ name: "backports", uri: "http://deb.debian.org/debian", suite: "bookworm-backports" }],
    outputs: ["squashfs", "kernel", "initrd", "manifest", "qcow2"],
  };
  for (const [key, field] of Object.entries(schema.properties)) {
    assert.ok(field.examples?.length, `${key} has no example`);
    for (const example of field.examples ?? []) {
      assert.doesNotThrow(() => parseRecipe(stringify({ ...base, ...context, [key]: example }), `example of ${key}`, "/srv"));
    }
  }
});
