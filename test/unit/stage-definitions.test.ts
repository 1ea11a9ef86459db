/**
 * A stage is declared once (src/stages/stage.ts): the planner loops over STAGES, the tools a plan
 * needs come from the stages it plans, and every option the planner makes passes the schema the
 * engine checks before `run`. Pure: the recipes are the repository's examples and fixtures.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { ARTIFACT_KINDS } from "../../src/artifacts/types.js";
import { parseDeb822Sources } from "../../src/host/apt-sources.js";
import type { Tool, ToolVersions } from "../../src/host/tools.js";
import { planBuild, toolsFor } from "../../src/plan/plan.js";
import { loadRecipe } from "../../src/recipe/load.js";
import { STAGES, stageOf } from "../../src/stages/index.js";
import { checkedOptions, factsOf } from "../../src/stages/stage.js";
import { kernel } from "../../src/stages/kernel.js";
import { REPO } from "../helpers/kiln.js";

const host = {
  hostSources: parseDeb822Sources("Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n"),
  initramfsDigest: "sha256:aaaa",
  playbookTrees: {},
  siteCas: { "/etc/kiln/site.pem": "sha256:11" },
};
const RECIPES = ["examples/minimal.yaml", "examples/server.yaml", "examples/disk-iso.yaml", "examples/upgrade.yaml", "test/fixtures/recipes/full/recipe.yaml", "test/fixtures/recipes/disk-iso/recipe.yaml", "test/fixtures/recipes/import/recipe.yaml"];
const versions = (tools: Tool[]): ToolVersions => Object.fromEntries(tools.map((t) => [t, "1.0"]));

test("each stage kind is declared once, and every file a stage exports has a kind in the media-type table", () => {
  const kinds = STAGES.map((s) => s.kind);
  assert.deepEqual(kinds, [...new Set(kinds)]);
  for (const s of STAGES) for (const o of s.outputs ?? []) assert.ok(ARTIFACT_KINDS[o.artifact], `${s.kind}: ${o.file}`);
});

for (const file of RECIPES) {
  test(`${file}: planned with only the tools toolsFor lists, every option passes its stage's schema`, async () => {
    const loaded = await loadRecipe(path.join(REPO, file));
    const tools = toolsFor(loaded, host);
    // Throws if a stage drives a tool toolsFor did not list (it would otherwise be keyed "unknown").
    const plan = planBuild(loaded, { ...host, tools: versions(tools) });
    const stages = [...plan.root, ...plan.kernels, ...plan.artifacts];
    for (const s of stages) {
      checkedOptions(stageOf(s.kind), s.options);
      for (const t of stageOf(s.kind).tools) assert.ok(tools.includes(t), `${s.name} drives ${t}`);
      assert.ok(Object.values(s.record.tools).every((v) => v === "1.0"), `${s.name}: ${JSON.stringify(s.record.tools)}`);
    }
  });
}

test("a stage whose tool was not looked up stops the planner, naming the stage and the tool", async () => {
  const loaded = await loadRecipe(path.join(REPO, "examples/disk-iso.yaml"));
  const tools = toolsFor(loaded, host).filter((t) => t !== "xorriso");
  assert.throws(() => planBuild(loaded, { ...host, tools: versions(tools) }), /stage iso drives xorriso, but no version of it was looked up/);
});

test("options that do not match a stage's schema are refused before run, naming the stage and the field", () => {
  assert.throws(() => checkedOptions(kernel, { flavor: "generic" }), (e: Error) => /^stage kernel: options do not match its schema/.test(e.message) && /package/.test(e.message));
  assert.throws(() => checkedOptions(stageOf("seal"), { extra: true }), /stage seal: options do not match/);
  assert.deepEqual(checkedOptions(kernel, { flavor: "generic", package: "linux-image-amd64" }), { flavor: "generic", package: "linux-image-amd64" });
});

test("facts are read back through the stage's schema, not cast", () => {
  assert.deepEqual(factsOf(kernel, { kernelVersion: "6.1.0-57-amd64", kpackage: "linux-image-amd64", files: {} }), { kernelVersion: "6.1.0-57-amd64", kpackage: "linux-image-amd64" });
  assert.throws(() => factsOf(kernel, { kpackage: "linux-image-amd64" }), /stage kernel: recorded facts do not match its schema[^]*kernelVersion/);
});
