/**
 * A recipe record's `template_dictionary` rendered into its recipe.yaml.
 *
 * IMS renders recipes with Jinja2 in the job's fetch-recipe step (ims-python-helper fetch.py
 * `template_recipe`): the files a recipe lists in `.ims_recipe_template.yaml` (`template_files`),
 * with the record's template_dictionary as variables; an unknown variable renders as "" there.
 * Kiln renders one file, recipe.yaml (never the files it references), in the same step, and only
 * `{{ key }}` placeholders (plus Jinja's string literals, `{{ '{{ not a key }}' }}`, to write a
 * literal): no filters, no `{% … %}`. Other uses of `{{ … }}` (Go templates in a script,
 * `{{.Names}}`) stay as they are.
 *
 * A value is text put into the YAML *value* (or key) that holds the placeholder; it can never
 * change the document's structure. The placeholders are swapped for plain words, the YAML is
 * parsed, and every scalar holding one is rewritten whole with the values in it: as plain text
 * when the result is plain-safe and the scalar was plain (so `level: {{ n }}` with n = 3 is the
 * number 3, exactly as if 3 had been typed there), else as a double-quoted YAML string (so a value
 * with `: `, `#`, quotes or newlines is one string, wherever it lands: block or flow, a quoted
 * string, a `|` script). Write `"{{ key }}"` to always get a string. Lines keep their numbers.
 * Placeholders in comments are left as they are. A placeholder naming a key the dictionary lacks
 * is an error naming it, its line and the recipe.
 */
import { readFile, writeFile } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import { parseDocument, visit, type Scalar } from "yaml";
import { KilnError } from "../errors.js";
import type { RecipeRecord } from "../catalog/records.js";

export type TemplateDictionary = RecipeRecord["template_dictionary"];

/** `{{ key }}` (a Jinja name) or `{{ 'literal' }}` / `{{ "literal" }}`, on one line. */
const PLACEHOLDER = /\{\{-?[ \t]*(?:([A-Za-z_][A-Za-z0-9_]*)|'([^'\n]*)'|"([^"\n]*)")[ \t]*-?\}\}/g;

/**
 * Text YAML reads back unchanged as a plain scalar in block and flow context alike: words of
 * safe characters separated by single spaces, not starting with an indicator.
 */
const PLAIN_SAFE = /^(?:-(?=[A-Za-z0-9_.])|[A-Za-z0-9_./~])[A-Za-z0-9_./~+=@%-]*(?: [A-Za-z0-9_./~+=@%-]+)*$/;

export interface RenderedRecipe {
  text: string;
  /** Dictionary keys the recipe used, in order of first use. */
  keys: string[];
  /** Placeholders rendered (string literals included; those in comments not). */
  placeholders: number;
}

interface Found {
  token: string;
  original: string;
  line: number;
  key?: string;
  literal?: string;
}

/** A YAML double-quoted scalar of `s` (JSON's escapes are YAML's; the few characters YAML will not take raw are escaped too). */
export function yamlQuote(s: string): string {
  return JSON.stringify(s).replace(/[\u007f-\u009f\u2028\u2029\ufeff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

function templateError(label: string, message: string, path = "recipe.yaml"): KilnError {
  return new KilnError("RECIPE_INVALID", `${label}: ${message}`, { problems: [{ path, message }] });
}

/**
 * Renders recipe.yaml text. `label` starts every message (e.g. `recipe <id>`). Text without
 * placeholders comes back as it is, byte for byte.
 */
export function renderRecipeTemplate(text: string, dictionary: TemplateDictionary, label: string): RenderedRecipe {
  const found: Found[] = [];
  let nonce = randomBytes(4).toString("hex");
  while (text.includes(`kilntpl${nonce}`)) nonce = randomBytes(4).toString("hex");
  const lineStarts = [0];
  for (let i = text.indexOf("\n"); i !== -1; i = text.indexOf("\n", i + 1)) lineStarts.push(i + 1);
  const lineOf = (offset: number) => {
    let lo = 0;
    let hi = lineStarts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (lineStarts[mid]! <= offset) lo = mid;
      else hi = mid - 1;
    }
    return lo + 1;
  };
  // Placeholders become plain words of letters and digits: YAML reads the document's structure
  // as it will be after rendering, whatever the values hold.
  const sub = text.replace(PLACEHOLDER, (original: string, key: string | undefined, single: string | undefined, double: string | undefined, offset: number) => {
    const token = `kilntpl${nonce}x${found.length}y`;
    found.push({ token, original, line: lineOf(offset), ...(key !== undefined ? { key } : { literal: single ?? double ?? "" }) });
    return token;
  });
  if (found.length === 0) return { text, keys: [], placeholders: 0 };

  const doc = parseDocument(sub, { prettyErrors: false });
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    const where = `line ${lineOf(e.pos[0])}: `; // placeholders and their words have no newlines: lines match
    throw templateError(label, `recipe.yaml is not valid YAML (${where}${e.message.replace(new RegExp(`kilntpl${nonce}x(\\d+)y`, "g"), (_m, i: string) => found[Number(i)]!.original)})`);
  }

  const values = new Map<string, string>();
  for (const { key, value } of dictionary) values.set(key, value); // a repeated key: the last wins, as in IMS' dict
  const byToken = new Map(found.map((f) => [f.token, f]));
  const tokenRe = new RegExp(`kilntpl${nonce}x\\d+y`, "g");
  const scalars: Array<[number, number]> = [];
  const edits: Array<{ start: number; end: number; text: string }> = [];
  const used = new Set<Found>();
  const missing: Found[] = [];

  visit(doc, {
    Scalar(_key, node: Scalar) {
      if (!node.range) return;
      const [start, end] = node.range;
      scalars.push([start, end]);
      const source = sub.slice(start, end);
      if (!tokenRe.test(source)) return;
      tokenRe.lastIndex = 0;
      const value = typeof node.value === "string" ? node.value : String(node.source ?? source);
      const rendered = value.replace(tokenRe, (token) => {
        const f = byToken.get(token)!;
        used.add(f);
        if (f.literal !== undefined) return f.literal;
        const v = values.get(f.key!);
        if (v === undefined) {
          missing.push(f);
          return "";
        }
        return v;
      });
      const plain = node.type === "PLAIN" && PLAIN_SAFE.test(rendered);
      // The same number of lines as the source it replaces: line numbers in later messages hold.
      const newlines = "\n".repeat(source.split("\n").length - 1);
      edits.push({ start, end, text: (plain ? rendered : yamlQuote(rendered)) + newlines });
    },
  });

  if (missing.length > 0) {
    const have = [...values.keys()];
    const list = missing.map((f) => `line ${f.line}: ${f.original}`).join("; ");
    const names = [...new Set(missing.map((f) => f.key!))];
    throw templateError(
      label,
      `recipe.yaml uses ${names.map((n) => `{{ ${n} }}`).join(", ")}, which the recipe's template_dictionary does not define (${list}); ` +
        (have.length ? `it defines ${have.join(", ")}` : "it is empty") +
        `. Add ${names.length > 1 ? "them" : "it"} to the record's template_dictionary (PATCH the recipe, or kiln ims recipes update --template-dictionary-key/--template-dictionary-value)`,
      "template_dictionary",
    );
  }

  // Placeholders outside every scalar: in a comment they stay as written; anywhere else (an
  // anchor, a tag) they cannot be rendered as text.
  const inScalar = (offset: number) => scalars.some(([s, e]) => offset >= s && offset < e);
  const stray: Found[] = [];
  let out = sub;
  for (const f of found) {
    if (used.has(f)) continue;
    const at = sub.indexOf(f.token);
    const lineStart = sub.lastIndexOf("\n", at) + 1;
    let comment = false;
    for (let i = sub.indexOf("#", lineStart); i !== -1 && i < at; i = sub.indexOf("#", i + 1)) {
      if ((i === lineStart || /[ \t]/.test(sub[i - 1]!)) && !inScalar(i)) {
        comment = true;
        break;
      }
    }
    if (!comment) stray.push(f);
  }
  if (stray.length > 0) {
    throw templateError(label, `recipe.yaml: ${stray.map((f) => `line ${f.line}: ${f.original}`).join("; ")} is not inside a YAML value or key; Kiln renders placeholders only there (or leaves them in comments)`);
  }
  for (const e of edits.sort((a, b) => b.start - a.start)) out = out.slice(0, e.start) + e.text + out.slice(e.end);
  out = out.replace(tokenRe, (token) => byToken.get(token)!.original); // the ones in comments
  // Only scalars were rewritten, each as one valid scalar: anything else is a bug here.
  if (parseDocument(out).errors.length > 0) throw new Error(`recipe template: rendering ${label} broke its YAML: ${parseDocument(out).errors[0]!.message}`);
  const keys = [...new Set(found.filter((f) => used.has(f) && f.key !== undefined).map((f) => f.key!))];
  return { text: out, keys, placeholders: used.size };
}

/**
 * Renders a recipe.yaml file in place with the record's template_dictionary (rewritten only when
 * it has placeholders). Says what it did on `log`.
 */
export async function renderRecipeFile(file: string, recipe: Pick<RecipeRecord, "id" | "template_dictionary">, log?: { line(text: string): void }): Promise<RenderedRecipe> {
  const text = await readFile(file, "utf8");
  const r = renderRecipeTemplate(text, recipe.template_dictionary ?? [], `recipe ${recipe.id}`);
  if (r.placeholders > 0) {
    await writeFile(file, r.text);
    log?.line(`recipe.yaml: rendered ${r.placeholders} placeholder(s) with template_dictionary key(s) ${r.keys.join(", ") || "(none: string literals only)"}`);
  } else if ((recipe.template_dictionary ?? []).length > 0) {
    log?.line(`recipe.yaml has no {{ key }} placeholders; the template_dictionary (${recipe.template_dictionary.map((e) => e.key).join(", ")}) is not used`);
  }
  return r;
}
