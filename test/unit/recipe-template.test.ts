/**
 * template_dictionary rendering of recipe.yaml: values land as text inside the YAML value that
 * holds the placeholder and never change the document's structure; unknown keys are errors
 * naming the placeholder, its line and the recipe; a rendered recipe loads as a real recipe.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { parse } from "yaml";
import { isKilnError } from "../../src/errors.js";
import { renderRecipeFile, renderRecipeTemplate, yamlQuote } from "../../src/jobs/recipe-template.js";
import { parseRecipe } from "../../src/recipe/load.js";

const dict = (o: Record<string, string>) => Object.entries(o).map(([key, value]) => ({ key, value }));
const render = (text: string, o: Record<string, string>) => renderRecipeTemplate(text, dict(o), "recipe R1");

test("text without placeholders comes back byte for byte (cache keys do not move)", () => {
  const text = "apiVersion: kiln/v1\nname: x # {not a placeholder}\nrun: docker ps --format '{{.Names}}'\n";
  const r = render(text, { a: "1" });
  assert.equal(r.text, text);
  assert.equal(r.placeholders, 0);
});

test("values go into block, flow, quoted and key positions; plain results keep YAML's typing", () => {
  const text = [
    "name: web-{{ site }}",
    "base: { debian: {{suite}}, variant: minbase }",
    "packages: [systemd, {{ extra }}]",
    "level: {{ n }}",
    'label: "{{ n }}"',
    "quoted: 'it''s {{ site }}'",
    "{{ k }}: v",
    "",
  ].join("\n");
  const r = render(text, { site: "lab-1", suite: "bookworm", extra: "curl", n: "3", k: "key" });
  assert.deepEqual(parse(r.text), {
    name: "web-lab-1",
    base: { debian: "bookworm", variant: "minbase" },
    packages: ["systemd", "curl"],
    level: 3,
    label: "3",
    quoted: "it's lab-1",
    key: "v",
  });
  assert.deepEqual(r.keys, ["site", "suite", "extra", "n", "k"]);
  assert.equal(r.placeholders, 7);
  assert.match(r.text, /^name: web-lab-1$/m, "a plain-safe result stays plain");
});

test("a value with ': ', '#', quotes, '- ', braces or newlines is one string: the structure never changes", () => {
  const nasty = 'a: b # not a comment\n- item\n{x: [1, 2]} "q" \'s\' \\ \t end: ';
  const text = ["top: {{ v }}", "list: [one, {{ v }}, three]", "map: { k: {{ v }} }", "inner: pre {{ v }} post", 'dq: "x{{ v }}y"', "sq: 'x{{ v }}y'", "after: 1", ""].join("\n");
  const r = render(text, { v: nasty });
  const data = parse(r.text) as Record<string, unknown>;
  assert.deepEqual(Object.keys(data), ["top", "list", "map", "inner", "dq", "sq", "after"]);
  assert.equal(data.top, nasty);
  assert.deepEqual(data.list, ["one", nasty, "three"]);
  assert.deepEqual(data.map, { k: nasty });
  assert.equal(data.inner, `pre ${nasty} post`);
  assert.equal(data.dq, `x${nasty}y`);
  assert.equal(data.sq, `x${nasty}y`);
  assert.equal(data.after, 1);
  const values = { empty: "", comma: "a, b", tilde: "~", dash: "-", colon: "x:", unicode: "é\u2028\u0085ü", ctrl: "\u0001\u007f" };
  for (const [name, v] of Object.entries(values)) {
    const out = parse(render("a: {{ v }}\nb: [{{ v }}]\n", { v }).text) as { a: unknown; b: unknown[] };
    if (name === "tilde") assert.equal(out.a, null, "~ is null, as if typed there; quote the placeholder for a string");
    else assert.equal(out.a, v, name);
    assert.equal(out.b.length, 1, `${name}: one list item`);
  }
  assert.equal(parse(yamlQuote("\u2028x\u007f")), "\u2028x\u007f");
});

test("in a | script the value is inserted verbatim, and later lines keep their numbers", () => {
  const text = ["scripts:", "  - name: greet", "    run: |", "      echo {{ msg }}", "      # {{ msg }} here is script text, not a YAML comment", "      done", "  - name: next", "    run: >-", "      folded {{ msg }}", "      more", "marker: {{ m }}", ""].join("\n");
  const msg = "x\ny: z # q";
  const r = render(text, { msg, m: "end" });
  const data = parse(r.text) as { scripts: Array<{ name: string; run: string }>; marker: string };
  assert.equal(data.scripts[0]!.run, `echo ${msg}\n# ${msg} here is script text, not a YAML comment\ndone\n`);
  assert.equal(data.scripts[1]!.run, `folded ${msg} more`);
  assert.equal(data.scripts[1]!.name, "next");
  assert.equal(r.text.split("\n").length, text.split("\n").length);
  assert.equal(r.text.split("\n").indexOf("marker: end"), text.split("\n").indexOf("marker: {{ m }}"), "same line number");
});

test("placeholders in comments stay as written and need no key; string literals write a literal {{ }}", () => {
  const text = "# set {{ undefined_key }} later\nname: x # and {{ other }}\nhelp: {{ '{{ name }}' }} and {{ \"}}\" }}\n";
  const r = render(text, {});
  assert.equal(r.text.split("\n")[0], "# set {{ undefined_key }} later");
  assert.match(r.text, /# and \{\{ other \}\}/);
  assert.deepEqual(parse(r.text), { name: "x", help: "{{ name }} and }}" });
  assert.deepEqual(r.keys, []);
});

test("an unknown key is an error naming the placeholder, its line, the recipe and the keys there are", () => {
  const text = "apiVersion: kiln/v1\nname: {{ site }}\nbase: { debian: {{ suite }} }\nother: {{ suite }}\n";
  assert.throws(
    () => render(text, { site: "a", arch: "x" }),
    (e: unknown) => {
      assert.ok(isKilnError(e));
      assert.equal(e.code, "RECIPE_INVALID");
      assert.match(e.message, /^recipe R1: recipe\.yaml uses \{\{ suite \}\}, which the recipe's template_dictionary does not define \(line 3: \{\{ suite \}\}; line 4: \{\{ suite \}\}\); it defines site, arch\./);
      assert.equal(e.problems[0]!.path, "template_dictionary");
      return true;
    },
  );
  assert.throws(() => render("a: {{ x }}\n", {}), /template_dictionary does not define.*it is empty/);
});

test("a placeholder outside any value (an anchor, a tag) is refused; so is YAML that does not parse", () => {
  assert.throws(() => render("a: &{{ x }} v\n", { x: "n" }), /line 1: \{\{ x \}\} is not inside a YAML value or key/);
  assert.throws(() => render("a: [{{ x }}\nb: 1\n", { x: "n" }), /^.*recipe R1: recipe\.yaml is not valid YAML \(line \d+: /);
});

test("a repeated key: the last value wins, as in IMS' dict", () => {
  assert.deepEqual(parse(renderRecipeTemplate("a: {{ k }}\n", [{ key: "k", value: "1" }, { key: "k", value: "2" }], "recipe R1").text), { a: 2 });
});

test("a rendered recipe.yaml loads as a kiln/v1 recipe with the values in place", async () => {
  const text = [
    "apiVersion: kiln/v1",
    "name: {{ name }}",
    "base: { debian: {{ suite }}, variant: minbase }",
    "packages: [systemd, systemd-sysv, {{ pkg }}]",
    "files:",
    "  - path: /etc/motd",
    "    content: {{ motd }}",
    "kernels:",
    "  - { flavor: generic, package: linux-image-amd64 }",
    "verify: boot",
    "",
  ].join("\n");
  const motd = "site: lab-1\n# managed by kiln\n";
  const r = render(text, { name: "lab-web", suite: "bookworm", pkg: "openssh-server", motd });
  const recipe = parseRecipe(r.text, "recipe.yaml", "/tmp");
  assert.equal(recipe.name, "lab-web");
  assert.deepEqual(recipe.base, { debian: "bookworm", variant: "minbase", components: ["main"] });
  assert.ok(recipe.packages.includes("openssh-server"));
  assert.equal((recipe.files[0] as { content: string }).content, motd);
});

test("renderRecipeFile rewrites recipe.yaml only when it has placeholders, and says what it did", async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), "kiln-tpl-"));
  try {
    const file = path.join(dir, "recipe.yaml");
    const lines: string[] = [];
    const log = { line: (s: string) => lines.push(s) };
    await writeFile(file, "name: {{ n }}\n");
    await renderRecipeFile(file, { id: "R2", template_dictionary: dict({ n: "web" }) }, log);
    assert.equal(await readFile(file, "utf8"), "name: web\n");
    assert.deepEqual(lines, ["recipe.yaml: rendered 1 placeholder(s) with template_dictionary key(s) n"]);
    const before = (await stat(file)).mtimeMs;
    await new Promise((r) => setTimeout(r, 20));
    await renderRecipeFile(file, { id: "R2", template_dictionary: dict({ n: "web" }) }, log);
    assert.equal((await stat(file)).mtimeMs, before, "no placeholders: not rewritten");
    assert.match(lines[1]!, /no \{\{ key \}\} placeholders; the template_dictionary \(n\) is not used/);
    await writeFile(file, "name: {{ missing }}\n");
    await assert.rejects(renderRecipeFile(file, { id: "R2", template_dictionary: [] }), /^KilnError: recipe R2: recipe\.yaml uses \{\{ missing \}\}/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
