/**
 * The recipe's JSON Schema, for editors (yaml-language-server, VS Code) and `kiln recipe schema`.
 * Generated from RecipeSchema, so it cannot say other than the validator; the committed copy in
 * schema/recipe.schema.json is kept in step by test/unit/recipe-artifacts.test.ts.
 *
 * It describes what may be written (io: "input"): fields with defaults are optional. Rules that
 * span fields (upgrade needs a repository, content or source) exist only in the validator.
 */
import { z } from "zod";
import { API_VERSION, RecipeSchema } from "./schema.js";

/** Identifies the format, not a place: Kiln has no web address to promise. */
export const RECIPE_SCHEMA_ID = `urn:kiln:recipe:${API_VERSION.replace("kiln/", "")}`;

/** Where the committed copy lives, relative to the repository root. */
export const RECIPE_SCHEMA_FILE = "schema/recipe.schema.json";

export function recipeJsonSchema(): Record<string, unknown> {
  const { $schema, ...rest } = z.toJSONSchema(RecipeSchema, { io: "input", target: "draft-2020-12" });
  return { $schema, $id: RECIPE_SCHEMA_ID, title: `Kiln recipe (${API_VERSION})`, ...rest };
}

/** The file's exact text: stable key order, two-space indent, final newline. */
export function recipeJsonSchemaText(): string {
  return `${JSON.stringify(recipeJsonSchema(), null, 2)}\n`;
}
