/**
 * Turning a recipe file into a validated Recipe, or into every problem with it at once.
 *
 * Each problem names the field path and says what is allowed:
 *   recipe.yaml: kernels[1].flavor: "RT!" is not a flavor name; use lowercase letters, digits and "-", e.g. "rt"
 * and all of them are thrown together as one KilnError("RECIPE_INVALID") whose `problems` carry the
 * same paths for the API's `errors[]`. The words come from the schema (schema.ts); this file picks
 * which issues to show, splits unknown keys, and adds what only the file can tell (YAML syntax,
 * referenced files).
 */
import { createHash } from "node:crypto";
import { constants } from "node:fs";
import { lstat, open, readdir, readFile, readlink, realpath, stat } from "node:fs/promises";
import path from "node:path";
import { isMap, LineCounter, parseDocument, type Document, type YAMLError } from "yaml";
import { z } from "zod";
import { sha256Hex } from "../cache/key.js";
import { KilnError, type Problem } from "../errors.js";
import { PLAYBOOK_FOLDERS } from "../stages/ansible.js";
import { API_VERSION, kindOf, outsideFolder, RecipeSchema, show, speakPlainly, staysInside, type Recipe } from "./schema.js";

/** A recipe read from disk, with what a build needs to key it: its digest and its input files' digests. */
export interface LoadedRecipe {
  /** Referenced paths (base.image, keys, sources, CA files) are absolute. */
  recipe: Recipe;
  /** Absolute path of the recipe file. */
  file: string;
  /** The recipe's folder, against which relative paths were resolved. */
  dir: string;
  /** sha256 (hex) of the recipe file's bytes. */
  sha256: string;
  /** Every referenced file, by absolute path, to "sha256:<hex>" of its bytes. */
  inputs: Record<string, string>;
}

/** Reads, validates and checks a recipe; throws RECIPE_INVALID listing every problem. */
export async function loadRecipe(file: string): Promise<LoadedRecipe> {
  const abs = path.resolve(file);
  let bytes: Buffer;
  try {
    bytes = await readFile(abs);
  } catch (e) {
    throw recipeInvalid(file, [{ path: "", message: `cannot read ${abs} (${reason(e)}); check the path` }]);
  }
  const dir = path.dirname(abs);
  const recipe = parseRecipe(bytes.toString("utf8"), file, dir);
  const inputs = await checkReferencedFiles(recipe, file, dir);
  return { recipe, file: abs, dir, sha256: sha256Hex(bytes), inputs };
}

/**
 * Validates recipe text without touching the disk. `fileLabel` starts each message; relative paths
 * in the result are resolved against `dir` (checkReferencedFiles then checks they exist).
 */
export function parseRecipe(text: string, fileLabel: string, dir: string): Recipe {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false });
  if (doc.errors.length > 0) throw recipeInvalid(fileLabel, doc.errors.map((e) => syntaxProblem(e, text, lineCounter)));
  if (doc.contents === null) throw recipeInvalid(fileLabel, [{ path: "", message: `the file is empty; a recipe starts with "apiVersion: ${API_VERSION}", then name and base` }]);

  let data: unknown;
  try {
    data = doc.toJS();
  } catch (e) {
    // yaml refuses documents whose aliases expand without bound ("billion laughs").
    throw recipeInvalid(fileLabel, [{ path: "", message: `cannot read the YAML (${e instanceof Error ? e.message : String(e)}); use fewer aliases` }]);
  }
  if (!isMap(doc.contents))
    throw recipeInvalid(fileLabel, [{ path: "", message: `expected a mapping of recipe fields, got ${kindOf(data)}; start with "apiVersion: ${API_VERSION}"` }]);

  // Another kiln format version has other fields: judging them by kiln/v1's rules would only add noise.
  const version = (data as Record<string, unknown>).apiVersion;
  if (typeof version === "string" && version.startsWith("kiln/") && version !== API_VERSION)
    throw recipeInvalid(fileLabel, [{ path: "apiVersion", message: `${show(version)} is not a format version this kiln reads; use ${API_VERSION}` }]);

  const result = RecipeSchema.safeParse(data, { error: speakPlainly, reportInput: true });
  if (!result.success) throw recipeInvalid(fileLabel, inDocumentOrder(problemsOf(result.error.issues, [], RecipeSchema), doc));
  return resolvePaths(result.data, dir);
}

/** Every field that names a file beside the recipe, by field path, in recipe order. */
export function referencedFiles(r: Recipe): Array<{ path: string; file: string }> {
  const refs: Array<{ path: string; file: string }> = [];
  const add = (field: string, file: string | undefined) => file !== undefined && refs.push({ path: field, file });
  if ("image" in r.base) add("base.image", r.base.image);
  r.repositories.forEach((x, i) => add(`repositories[${i}].key`, x.key));
  r.files.forEach((f, i) => add(`files[${i}].source`, f.source));
  r.caCertificates.forEach((c, i) => add(`caCertificates[${i}]`, c));
  r.scripts.forEach((s, i) => add(`scripts[${i}].source`, s.source));
  r.ansible.forEach((a, i) => add(`ansible[${i}].playbook`, a.playbook));
  return refs;
}

/**
 * Checks that each referenced file (already absolute, see parseRecipe) is a readable regular file
 * inside the recipe's folder, links included, and returns their digests by path. Throws
 * RECIPE_INVALID naming every missing, unusable or outside one.
 *
 * The paths in `r` become the files' real paths (links resolved), so the stages that copy them
 * later open what was checked here, not whatever a link was swapped to meanwhile.
 */
export async function checkReferencedFiles(r: Recipe, fileLabel: string, dir: string): Promise<Record<string, string>> {
  const inputs: Record<string, string> = {};
  const problems: Problem[] = [];
  const root = await realpath(dir);
  const real = new Map<string, string>();
  for (const ref of referencedFiles(r)) {
    const written = asWritten(ref.file, dir);
    const rel = path.relative(dir, ref.file);
    // parseRecipe refused paths that leave the folder as written; this is what links make of them.
    const found = staysInside(rel) ? await resolveInside(root, rel) : ({ outside: true } as const);
    if ("outside" in found) {
      problems.push({ path: ref.path, message: outsideFolder(written) });
      continue;
    }
    if ("error" in found) {
      const missing = ["ENOENT", "ENOTDIR"].includes(errorCode(found.error));
      problems.push({
        path: ref.path,
        message: missing
          ? `${written} does not exist${lookedIn(ref.file, dir)}; relative paths start at the recipe's folder`
          : `${written} cannot be read${lookedIn(ref.file, dir)}: ${reason(found.error)}; make it readable by the user running kiln`,
      });
      continue;
    }
    real.set(ref.file, found.real);
    if (inputs[found.real] !== undefined) continue;
    try {
      inputs[found.real] = `sha256:${await sha256Regular(found.real)}`;
    } catch (e) {
      problems.push({
        path: ref.path,
        message:
          errorCode(e) === "ENOTREG"
            ? `${written} is not a regular file${lookedIn(ref.file, dir)}; give the path of a file`
            : `${written} cannot be read${lookedIn(ref.file, dir)}: ${reason(e)}; make it readable by the user running kiln`,
      });
    }
  }
  for (const [i, a] of r.ansible.entries()) {
    const at = real.get(a.playbook);
    if (at) problems.push(...(await linksOutOfPlaybookFolder(root, at, `ansible[${i}].playbook`)));
  }
  if (problems.length > 0) throw recipeInvalid(fileLabel, problems);
  useRealPaths(r, (p) => real.get(p) ?? p);
  return inputs;
}

/** Symbolic links on a recipe path are followed at most this often, as the kernel does (ELOOP). */
const MAX_LINKS = 40;

/**
 * Where `rel` (relative, see staysInside) leads from `root` (a real path), resolved one name at a
 * time as the kernel would, links included. Stops with `outside` the moment a ".." or a link would
 * leave `root`, before looking at anything out there, so the answer says nothing about the host.
 */
async function resolveInside(root: string, rel: string): Promise<{ real: string } | { outside: true } | { error: unknown }> {
  let at = root;
  const todo = rel.split("/");
  let links = 0;
  while (todo.length > 0) {
    const name = todo.shift()!;
    if (name === "" || name === ".") continue;
    if (name === "..") {
      if (at === root) return { outside: true };
      at = path.dirname(at);
      continue;
    }
    const next = path.join(at, name);
    let st;
    try {
      st = await lstat(next);
    } catch (error) {
      return { error };
    }
    if (st.isSymbolicLink()) {
      if (++links > MAX_LINKS) return { error: Object.assign(new Error("too many levels of symbolic links"), { code: "ELOOP" }) };
      const target = await readlink(next);
      if (path.isAbsolute(target)) {
        const inRoot = path.relative(root, target);
        if (!staysInside(inRoot)) return { outside: true };
        at = root;
        todo.unshift(...inRoot.split("/"));
      } else {
        todo.unshift(...target.split("/"));
      }
      continue;
    }
    if (todo.some((n) => n !== "" && n !== ".") && !st.isDirectory()) return { error: Object.assign(new Error("a parent is not a directory"), { code: "ENOTDIR" }) };
    at = next;
  }
  return { real: at };
}

/**
 * Ansible reads the folders beside a playbook (roles/, templates/ …, see PLAYBOOK_FOLDERS) on the
 * build host: a link in them that leads out of the recipe's folder is refused like a named file.
 */
async function linksOutOfPlaybookFolder(root: string, playbook: string, field: string): Promise<Problem[]> {
  const problems: Problem[] = [];
  const base = path.dirname(playbook);
  let seen = 0;
  const walk = async (abs: string, depth: number): Promise<void> => {
    if (depth > 16 || ++seen > 10_000) return;
    const st = await lstat(abs).catch(() => undefined);
    if (!st) return;
    const rel = path.relative(root, abs);
    if (st.isSymbolicLink()) {
      const found = await resolveInside(root, rel);
      if ("outside" in found) problems.push({ path: field, message: outsideFolder(`./${rel}`) });
      else if ("real" in found && (await stat(found.real)).isDirectory()) await walkDir(found.real, depth);
      return;
    }
    if (st.isDirectory()) await walkDir(abs, depth);
  };
  const walkDir = async (abs: string, depth: number) => {
    for (const name of (await readdir(abs)).sort()) await walk(path.join(abs, name), depth + 1);
  };
  for (const name of PLAYBOOK_FOLDERS) await walk(path.join(base, name), 0);
  return problems;
}

/** Points the recipe's file fields at the real paths checked (see checkReferencedFiles). */
function useRealPaths(r: Recipe, real: (p: string) => string): void {
  if ("image" in r.base) r.base.image = real(r.base.image);
  for (const x of r.repositories) if (x.key !== undefined) x.key = real(x.key);
  for (const f of r.files) if (f.source !== undefined) f.source = real(f.source);
  r.caCertificates = r.caCertificates.map(real);
  for (const s of r.scripts) if (s.source !== undefined) s.source = real(s.source);
  for (const a of r.ansible) a.playbook = real(a.playbook);
}

/** The error for a bad recipe: one line per problem, each starting with the file's name. */
export function recipeInvalid(fileLabel: string, problems: Problem[]): KilnError {
  const lines = problems.map((p) => `${fileLabel}: ${p.path ? `${p.path}: ` : ""}${p.message}`);
  return new KilnError("RECIPE_INVALID", lines.join("\n"), { problems, hint: "docs/recipe.md describes every field of kiln/v1" });
}

/** "kernels[1].flavor" from ["kernels", 1, "flavor"]. */
export function formatPath(segments: readonly PropertyKey[]): string {
  return segments
    .map((s, i) => {
      if (typeof s === "number") return `[${s}]`;
      const name = String(s);
      if (!/^[A-Za-z_][\w-]*$/.test(name)) return `[${JSON.stringify(name)}]`;
      return i === 0 ? name : `.${name}`;
    })
    .join("");
}

// ---------------------------------------------------------------------------------------------
// zod issues → problems

interface FieldProblem {
  segments: PropertyKey[];
  message: string;
}

function problemsOf(issues: readonly z.core.$ZodIssue[], at: PropertyKey[], schema: z.core.$ZodType): FieldProblem[] {
  return issues.flatMap((iss): FieldProblem[] => {
    const segments = [...at, ...iss.path];
    if (iss.code === "unrecognized_keys") {
      const known = fieldsOf(schemaAt(schema, iss.path));
      return iss.keys.map((key) => ({ segments: [...segments, key], message: unknownField(key, known) }));
    }
    const union = schemaAt(schema, iss.path);
    if (iss.code === "invalid_union" && union instanceof z.ZodUnion) {
      const meant = meantOption(iss);
      if (meant !== undefined) return problemsOf(iss.errors[meant] ?? [], segments, union.options[meant] ?? union);
      // No option fits: the union's message, plus any key that no option knows ({imag: …}).
      const unknownTo = iss.errors.map((option) => option.flatMap((e) => (e.code === "unrecognized_keys" && e.path.length === 0 ? e.keys : [])));
      const unknown = unknownTo[0]?.filter((key) => unknownTo.every((keys) => keys.includes(key))) ?? [];
      return [{ segments, message: iss.message }, ...unknown.map((key) => ({ segments: [...segments, key], message: unknownField(key, fieldsOf(union)) }))];
    }
    return [{ segments, message: iss.message }];
  });
}

/**
 * The union option the user meant (base: {debian…} or {image…}): the only one whose own key is
 * present and that got a mapping. None or several (both keys given) → the union's own message.
 */
function meantOption(iss: z.core.$ZodIssueInvalidUnion): number | undefined {
  const missingOwnKey = (e: z.core.$ZodIssue) => e.code === "invalid_type" && (e.path.length === 0 || (e.path.length === 1 && e.input === undefined));
  const fits = iss.errors.flatMap((option, i) => (option.some(missingOwnKey) ? [] : [i]));
  return fits.length === 1 ? fits[0] : undefined;
}

function unknownField(key: string, known: string[]): string {
  const guess = closest(key, known);
  if (guess !== undefined) return `unknown field; did you mean "${guess}"?`;
  return known.length > 0 ? `unknown field; the fields here are ${known.join(", ")}` : "unknown field; remove it";
}

/** The known field a typo most likely meant, if one is close: "kernal" → "kernels", "ca_certificates" → "caCertificates". */
function closest(key: string, known: string[]): string | undefined {
  const norm = (s: string) => s.toLowerCase().replace(/[-_]/g, "");
  const distance = (k: string) => (norm(key).length >= 4 && norm(k).startsWith(norm(key)) ? 1 : editDistance(norm(key), norm(k)));
  const ranked = known.map((k) => ({ k, d: distance(k) })).sort((a, b) => a.d - b.d);
  const best = ranked[0];
  return best !== undefined && best.d <= Math.max(1, Math.floor(key.length / 3)) ? best.k : undefined;
}

/** Edit distance counting a swap of neighbours as one edit ("imgae" → "image"), as typos go. */
function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) best = Math.min(best, d[i - 2]![j - 2]! + 1);
      d[i]![j] = best;
    }
  return d[a.length]![b.length]!;
}

/** The schema that checks the value at `segments`, with optional/default wrappers taken off. */
function schemaAt(schema: z.core.$ZodType, segments: readonly PropertyKey[]): z.core.$ZodType | undefined {
  const s = unwrap(schema);
  const [head, ...rest] = segments;
  if (head === undefined) return s;
  if (s instanceof z.ZodArray) return schemaAt(s.element, rest);
  if (s instanceof z.ZodObject) {
    const field = s.shape[String(head)];
    return field === undefined ? undefined : schemaAt(field, rest);
  }
  return undefined;
}

function unwrap(schema: z.core.$ZodType): z.core.$ZodType {
  if (schema instanceof z.ZodOptional || schema instanceof z.ZodDefault || schema instanceof z.ZodPrefault) return unwrap(schema.unwrap());
  return schema;
}

/** The field names an object schema takes (every option's, for a union). */
function fieldsOf(schema: z.core.$ZodType | undefined): string[] {
  if (schema instanceof z.ZodObject) return Object.keys(schema.shape);
  if (schema instanceof z.ZodUnion) return [...new Set(schema.options.flatMap((o) => fieldsOf(unwrap(o))))];
  return [];
}

/**
 * Problems in the order their fields appear in the file (zod reports in schema order). A missing
 * field sorts at the end of the nearest mapping that is there, after its siblings.
 */
function inDocumentOrder(problems: FieldProblem[], doc: Document): Problem[] {
  const offset = (segments: PropertyKey[]) => {
    for (let n = segments.length; n >= 0; n--) {
      const node = (n === 0 ? doc.contents : doc.getIn(segments.slice(0, n), true)) as { range?: [number, number, number] } | null | undefined;
      if (node?.range) return n === segments.length ? node.range[0] : node.range[1];
    }
    return 0;
  };
  return problems
    .map((p) => ({ p, at: offset(p.segments) }))
    .sort((a, b) => a.at - b.at)
    .map(({ p }) => ({ path: formatPath(p.segments), message: p.message }));
}

// ---------------------------------------------------------------------------------------------
// YAML and files

function syntaxProblem(e: YAMLError, text: string, lines: LineCounter): Problem {
  const { line, col } = lines.linePos(e.pos[0]);
  const where = `line ${line}, column ${col}`;
  switch (e.code) {
    case "DUPLICATE_KEY":
      return { path: "", message: `${where}: ${keyAt(text, e.pos[0])} appears twice in the same mapping; keep one` };
    case "MULTIPLE_DOCS":
      return { path: "", message: `${where}: a recipe is one YAML document; remove the "---" line and what follows it` };
    case "TAB_AS_INDENT":
      return { path: "", message: `${where}: YAML does not allow tabs for indentation; indent with spaces` };
    default:
      return { path: "", message: `${where}: YAML syntax: ${e.message.replace(/\.$/, "")}; check indentation, quotes and colons there` };
  }
}

/** The key written at `offset`, for messages: yaml's error range covers only its first character. */
function keyAt(text: string, offset: number): string {
  const key = text.slice(offset).split(/[:\n]/)[0]?.trim();
  return key ? JSON.stringify(key) : "a key";
}

function resolvePaths(r: Recipe, dir: string): Recipe {
  const abs = (p: string) => path.resolve(dir, p);
  return {
    ...r,
    base: "image" in r.base ? { ...r.base, image: abs(r.base.image) } : r.base,
    repositories: r.repositories.map((x) => (x.key === undefined ? x : { ...x, key: abs(x.key) })),
    files: r.files.map((f) => (f.source === undefined ? f : { ...f, source: abs(f.source) })),
    caCertificates: r.caCertificates.map(abs),
    scripts: r.scripts.map((s) => (s.source === undefined ? s : { ...s, source: abs(s.source) })),
    ansible: r.ansible.map((a) => ({ ...a, playbook: abs(a.playbook) })),
  };
}

/** The path as the user most likely wrote it: "./motd.txt" for files under the recipe's folder. */
function asWritten(file: string, dir: string): string {
  const rel = path.relative(dir, file);
  return rel.startsWith("..") || path.isAbsolute(rel) ? file : `./${rel}`;
}

function lookedIn(file: string, dir: string): string {
  return asWritten(file, dir) === file ? "" : ` (looked in ${file})`;
}

/**
 * sha256 of a regular file, opened without following a link (O_NOFOLLOW) and without waiting on a
 * FIFO (O_NONBLOCK): resolveInside checked the path, and what is opened must be what it checked.
 * A file that is not a regular one fails with code ENOTREG.
 */
async function sha256Regular(file: string): Promise<string> {
  const fh = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  try {
    if (!(await fh.stat()).isFile()) throw Object.assign(new Error("not a regular file"), { code: "ENOTREG" });
    // Streamed: base images run to gigabytes.
    const hash = createHash("sha256");
    for await (const chunk of fh.createReadStream({ autoClose: false })) hash.update(chunk as Buffer);
    return hash.digest("hex");
  } finally {
    await fh.close();
  }
}

function errorCode(e: unknown): string {
  return typeof e === "object" && e !== null && "code" in e ? String(e.code) : "";
}

function reason(e: unknown): string {
  const known: Record<string, string> = {
    ENOENT: "no such file",
    EACCES: "permission denied",
    EISDIR: "it is a directory",
    ENOTDIR: "a parent is not a directory",
    ELOOP: "too many levels of symbolic links",
  };
  return known[errorCode(e)] ?? (e instanceof Error ? e.message : String(e));
}
