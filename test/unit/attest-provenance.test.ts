// SHA256SUMS format and the provenance statement, without a build.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { BUILD_TYPE, CLI_BUILDER_ID, provenanceStatement } from "../../src/attest/provenance.js";
import { formatSums, parseSums } from "../../src/attest/sums.js";
import { loadRecipe } from "../../src/recipe/load.js";

let dir: string;
before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "kiln-prov-"));
});
after(() => rm(dir, { recursive: true, force: true }));

test("SHA256SUMS is sha256sum's own format: sorted, two spaces, and `sha256sum -c` accepts it", async () => {
  await mkdir(path.join(dir, "out/generic"), { recursive: true });
  await writeFile(path.join(dir, "out/squashfs"), "root");
  await writeFile(path.join(dir, "out/generic/boot-kernel"), "kernel");
  const sha = (s: string) => execFileSync("sha256sum", { input: s, encoding: "utf8" }).split(" ")[0]!;
  const text = formatSums([{ path: "squashfs", sha256: sha("root") }, { path: "generic/boot-kernel", sha256: sha("kernel") }]);
  assert.equal(text, `${sha("kernel")}  generic/boot-kernel\n${sha("root")}  squashfs\n`);
  await writeFile(path.join(dir, "out/SHA256SUMS"), text);
  assert.match(execFileSync("sha256sum", ["-c", "SHA256SUMS"], { cwd: path.join(dir, "out"), encoding: "utf8" }), /squashfs: OK/);
  assert.deepEqual(parseSums(text), [{ path: "generic/boot-kernel", sha256: sha("kernel") }, { path: "squashfs", sha256: sha("root") }]);
  assert.deepEqual(parseSums(`${"A".repeat(64)} *bin\n`), [{ path: "bin", sha256: "a".repeat(64) }], "binary-mode lines are read too");
});

test("SHA256SUMS naming a path outside the out dir is refused, with its line number", () => {
  for (const bad of ["../../etc/shadow", "/etc/shadow", "a/../../b", ""]) {
    assert.throws(() => parseSums(`${"a".repeat(64)}  squashfs\n${"b".repeat(64)}  ${bad}\n`), (e: Error) => e.message.includes('SHA256SUMS line 2: not "<sha256>  <path inside the out dir>"'), bad);
  }
  assert.throws(() => formatSums([{ path: "../x", sha256: "a".repeat(64) }]));
});

test("provenance: in-toto v1 + SLSA v1, recipe and referenced files by digest with paths relative to the recipe, stage keys, times", async () => {
  const rdir = path.join(dir, "recipe");
  await mkdir(rdir, { recursive: true });
  await writeFile(path.join(rdir, "motd.txt"), "hello\n");
  await writeFile(path.join(rdir, "recipe.yaml"), "apiVersion: kiln/v1\nname: prov-test\nbase: { debian: bookworm, variant: minbase }\noutputs: [squashfs]\nfiles:\n  - { path: /etc/motd, source: ./motd.txt }\n");
  const loaded = await loadRecipe(path.join(rdir, "recipe.yaml"));
  const input = {
    loaded,
    subjects: [{ path: "squashfs", sha256: "a".repeat(64) }, { path: "sbom.spdx.json", sha256: "b".repeat(64) }],
    stages: [{ name: "bootstrap", key: "1".repeat(64), cached: true, seconds: 3 }, { name: "files", key: "2".repeat(64), cached: false, seconds: 1 }],
    kilnVersion: "9.9.9",
    builderId: CLI_BUILDER_ID,
    startedOn: new Date("2026-12-03T10:00:00.500Z"),
    finishedOn: new Date("2026-12-03T10:05:00Z"),
  };
  const st = provenanceStatement(input);
  assert.equal(st._type, "https://in-toto.io/Statement/v1");
  assert.equal(st.predicateType, "https://slsa.dev/provenance/v1");
  assert.deepEqual(st.subject, [{ name: "squashfs", digest: { sha256: "a".repeat(64) } }, { name: "sbom.spdx.json", digest: { sha256: "b".repeat(64) } }]);
  const def = st.predicate.buildDefinition;
  assert.equal(def.buildType, BUILD_TYPE);
  assert.deepEqual(def.externalParameters.recipe, { name: "prov-test", file: "recipe.yaml", digest: { sha256: loaded.sha256 } });
  const motd = execFileSync("sha256sum", [path.join(rdir, "motd.txt")], { encoding: "utf8" }).split(" ")[0]!;
  assert.deepEqual(def.resolvedDependencies, [
    { name: "recipe", uri: "file:recipe.yaml", digest: { sha256: loaded.sha256 } },
    { name: "files[0].source", uri: "file:motd.txt", digest: { sha256: motd } },
  ]);
  assert.deepEqual(def.internalParameters.stages, [{ name: "bootstrap", key: "1".repeat(64) }, { name: "files", key: "2".repeat(64) }], "keys only: no cache hits or timings");
  assert.deepEqual(st.predicate.runDetails, { builder: { id: CLI_BUILDER_ID, version: { kiln: "9.9.9" } }, metadata: { startedOn: "2026-12-03T10:00:00Z", finishedOn: "2026-12-03T10:05:00Z" } });
  // Apart from the times, the same build gives the same statement, wherever the recipe is checked out.
  const moved = path.join(dir, "elsewhere");
  await mkdir(moved, { recursive: true });
  execFileSync("cp", ["-a", `${rdir}/.`, moved]);
  const again = provenanceStatement({ ...input, loaded: await loadRecipe(path.join(moved, "recipe.yaml")), startedOn: new Date(0), finishedOn: new Date(0) });
  const timeless = (s: typeof st) => JSON.stringify({ ...s, predicate: { ...s.predicate, runDetails: { ...s.predicate.runDetails, metadata: {} } } });
  assert.equal(timeless(again), timeless(st));
});
