/**
 * docs/recipe.md, rendered from the recipe's JSON Schema (itself generated from schema.ts): every
 * type, default, description and example on the page comes from the schema, so the page cannot
 * drift from the validator. test/unit/recipe-artifacts.test.ts compares the committed page with
 * this rendering; after changing the schema, rebuild and run
 *   node -e 'import("./dist/src/recipe/docs.js").then((m) => m.writeRecipeArtifacts("."))'
 */
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { stringify } from "yaml";
import { API_VERSION } from "./schema.js";
import { RECIPE_SCHEMA_FILE, recipeJsonSchema, recipeJsonSchemaText } from "./json-schema.js";

/** Where the committed page lives, relative to the repository root. */
export const RECIPE_DOCS_FILE = "docs/recipe.md";

/** The parts of a JSON Schema node this page reads. */
interface Node {
  type?: string;
  const?: unknown;
  enum?: unknown[];
  oneOf?: Node[];
  items?: Node;
  properties?: Record<string, Node>;
  required?: string[];
  default?: unknown;
  description?: string;
  examples?: unknown[];
  pattern?: string;
  format?: string;
  minimum?: number;
  maximum?: number;
  minItems?: number;
}

export function renderRecipeDocs(): string {
  const root = recipeJsonSchema() as Node;
  const fields = Object.entries(root.properties ?? {});
  const required = new Set(root.required ?? []);
  const example = Object.fromEntries(fields.flatMap(([name, node]) => (node.examples?.length ? [[name, node.examples[0]]] : [])));
  return [
    `# Recipe reference (${API_VERSION})`,
    "",
    "<!-- Generated from src/recipe/schema.ts by renderRecipeDocs() in src/recipe/docs.ts; do not edit by hand. -->",
    "",
    root.description ?? "",
    "",
    "A recipe is one YAML file. Kiln checks all of it before building anything: an unknown field or a wrong value is",
    "an error that names the field and says what is allowed, and every problem is reported at once. Every file a",
    "recipe names (base.image, keys, sources, scripts, CA certificates, playbooks) must be inside the recipe's folder",
    "and is named relative to it: an absolute path, a path that climbs out with \"..\" and a symbolic link that leads",
    "out of the folder are all refused, for `kiln build` and the service alike, because builds run as root and an",
    "image's files can be downloaded by anyone with a read-only token. Editors can check recipes as you type against the JSON",
    `Schema in \`${RECIPE_SCHEMA_FILE}\`; for yaml-language-server, start the recipe with`,
    `\`# yaml-language-server: $schema=<path to ${RECIPE_SCHEMA_FILE}>\`.`,
    "",
    table(
      ["Field", "Type", "Default"],
      fields.map(([name, node]) => [`[\`${name}\`](#${name.toLowerCase()})`, typeOf(node), defaultOf(node, required.has(name))]),
    ),
    ...fields.flatMap(([name, node]) => section(name, node, required.has(name))),
    "## Full example",
    "",
    yamlBlock(example),
  ].join("\n");
}

/** Writes schema/recipe.schema.json and docs/recipe.md under `repoRoot`; returns their paths. */
export async function writeRecipeArtifacts(repoRoot: string): Promise<string[]> {
  const outputs = [
    [RECIPE_SCHEMA_FILE, recipeJsonSchemaText()],
    [RECIPE_DOCS_FILE, renderRecipeDocs()],
  ] as const;
  for (const [file, text] of outputs) {
    await mkdir(path.dirname(path.join(repoRoot, file)), { recursive: true });
    await writeFile(path.join(repoRoot, file), text);
  }
  return outputs.map(([file]) => path.join(repoRoot, file));
}

function section(name: string, node: Node, isRequired: boolean): string[] {
  const presence = isRequired ? "Required" : node.default === undefined ? "Optional" : `Default: ${defaultOf(node, false)}`;
  const lines = [`## \`${name}\``, "", node.description ?? "", "", `Type: ${typeOf(node)} · ${presence}`, ""];
  if (node.oneOf) {
    node.oneOf.forEach((form, i) => {
      const key = form.required?.[0] ?? `form ${i + 1}`;
      lines.push(`### \`${name}\` with \`${key}\``, "", form.description ?? "", "", fieldsTable(form));
    });
  } else {
    if (node.type === "object") lines.push(fieldsTable(node));
    if (node.items?.type === "object") lines.push(`Each entry: ${node.items.description ?? ""}`, "", fieldsTable(node.items));
  }
  for (const example of node.examples ?? []) lines.push(yamlBlock({ [name]: example }));
  return lines;
}

function fieldsTable(object: Node): string {
  const required = new Set(object.required ?? []);
  return table(
    ["Field", "Type", "Default", "Description"],
    Object.entries(object.properties ?? {}).map(([name, node]) => [`\`${name}\``, typeOf(node), defaultOf(node, required.has(name)), node.description ?? ""]),
  );
}

function typeOf(node: Node): string {
  if (node.const !== undefined) return `\`${flow(node.const)}\``;
  if (node.enum) return `one of ${node.enum.map((v) => `\`${flow(v)}\``).join(", ")}`;
  if (node.oneOf) return `one of ${node.oneOf.length} forms (below)`;
  if (node.type === "array") return `${node.minItems ? "non-empty " : ""}list of ${node.items ? plural(typeOf(node.items)) : "values"}`;
  if (node.type === "object") return "mapping (fields below)";
  if (node.format === "uri") return "URL";
  if (node.type === "integer") return `integer, ${node.minimum} to ${node.maximum}`;
  if (node.pattern) return `string matching \`${node.pattern}\``;
  return node.type ?? "any";
}

function plural(type: string): string {
  if (type.startsWith("string")) return type.replace(/^string/, "strings");
  if (type.startsWith("mapping")) return "mappings (fields below)";
  return type;
}

function defaultOf(node: Node, isRequired: boolean): string {
  if (isRequired) return "**required**";
  return node.default === undefined ? "—" : `\`${flow(node.default)}\``;
}

/** A value as YAML flow text, the way recipes write short lists: [squashfs, kernel]. */
function flow(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(flow).join(", ")}]`;
  if (typeof v === "object" && v !== null) return `{${Object.entries(v).map(([k, x]) => `${k}: ${flow(x)}`).join(", ")}}`;
  return typeof v === "string" && /^[A-Za-z./][\w./:=-]*$/.test(v) ? v : JSON.stringify(v);
}

function yamlBlock(value: unknown): string {
  return ["```yaml", stringify(value, { lineWidth: 0 }).trimEnd(), "```", ""].join("\n");
}

function table(head: string[], rows: string[][]): string {
  const cell = (s: string) => s.replace(/\|/g, "\\|").replace(/\n/g, " ");
  return [`| ${head.join(" | ")} |`, `| ${head.map(() => "---").join(" | ")} |`, ...rows.map((r) => `| ${r.map(cell).join(" | ")} |`), ""].join("\n");
}
