// kiln rebuild's parts that need no build: comparing two out dirs artifact by artifact (from the
// files, not result.json's word), finding the recipe OUT was built from and refusing a changed
// one, and kiln attest verify's check that the provenance names the out dir's kiln.lock.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { BuildResult, ResultArtifact } from "../../src/artifacts/result.js";
import { ARTIFACT_KINDS } from "../../src/artifacts/types.js";
import { formatSums } from "../../src/attest/sums.js";
import { verifyAttestations } from "../../src/attest/verify.js";
import { fileDigests } from "../../src/cache/key.js";
import { isKilnError } from "../../src/errors.js";
import { compareOutDirs, formatRebuild, recipeOf } from "../../src/rebuild/rebuild.js";

let dir: string;
before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "kiln-rebuild-"));
});
after(() => rm(dir, { recursive: true, force: true }));

/** An out dir with these files as artifacts (and whatever result.json extras are given). */
async function outDir(name: string, files: Record<string, string>, extra: Partial<BuildResult> = {}): Promise<string> {
  const out = path.join(dir, name);
  const artifacts: ResultArtifact[] = [];
  for (const [rel, content] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(out, rel)), { recursive: true });
    await writeFile(path.join(out, rel), content);
    artifacts.push({ name: rel, path: rel, type: "t", ftype: "f", ...(await fileDigests(path.join(out, rel))) });
  }
  const result: BuildResult = { recipe: { name: "r", sha256: "0".repeat(64) }, stages: [], artifacts, verify: [], kiln: { version: "t", created: "", seconds: 0, unchangedImport: false }, ...extra };
  await writeFile(path.join(out, "result.json"), JSON.stringify(result));
  return out;
}

describe("compareOutDirs", () => {
  test("identical, different, missing and added artifacts; the signature is not compared", async () => {
    const a = await outDir("a", { "kiln.lock": "L", "squashfs.manifest": "m", "generic/boot-initrd": "i1", "disk.qcow2": "q", "SHA256SUMS.gpg": "sig1" });
    const b = await outDir("b", { "kiln.lock": "L", "squashfs.manifest": "m", "generic/boot-initrd": "i2", "live.iso": "iso", "SHA256SUMS.gpg": "sig2" });
    const c = await compareOutDirs(a, b, { diffoscope: false });
    assert.deepEqual(
      c.map((x) => [x.path, x.verdict]),
      [["disk.qcow2", "missing"], ["generic/boot-initrd", "different"], ["kiln.lock", "identical"], ["live.iso", "added"], ["squashfs.manifest", "identical"]],
    );
    assert.match(c.find((x) => x.verdict === "different")!.diffoscope!, /diffoscope is not installed/);
    const text = formatRebuild({ out: a, rebuilt: b, identical: false, diffoscope: false, artifacts: c });
    assert.match(text.at(-1)!, /3 of 5 artifacts differ: disk\.qcow2, generic\/boot-initrd, live\.iso \(diffoscope is not installed/);
  });

  test("the files are compared, not result.json's digests", async () => {
    const a = await outDir("c", { "squashfs.manifest": "m" });
    const b = await outDir("d", { "squashfs.manifest": "m" });
    await writeFile(path.join(b, "squashfs.manifest"), "changed after result.json was written");
    assert.equal((await compareOutDirs(a, b, { diffoscope: false }))[0]!.verdict, "different");
  });

  test("a folder that is no out dir is exit 2", async () => {
    await assert.rejects(compareOutDirs(path.join(dir, "none"), dir, { diffoscope: false }), (e: unknown) => isKilnError(e) && e.exitCode === 2 && /not a Kiln out dir/.test(e.message));
  });
});

describe("recipeOf", () => {
  const RECIPE = "apiVersion: kiln/v1\nname: r\nbase: { debian: bookworm }\nkernels: [{ flavor: generic, package: linux-image-amd64 }]\nfiles: [{ source: motd, path: /etc/motd }]\n";

  test("the recipe where result.json says, unchanged with its files: found; a changed file: refused naming it", async () => {
    const src = path.join(dir, "recipe");
    await mkdir(src, { recursive: true });
    await writeFile(path.join(src, "r.yaml"), RECIPE);
    await writeFile(path.join(src, "motd"), "hello\n");
    const { sha256 } = await fileDigests(path.join(src, "r.yaml"));
    const motd = (await fileDigests(path.join(src, "motd"))).sha256;
    const out = await outDir("built", { "kiln.lock": "L" }, { recipe: { name: "r", sha256, file: path.join(src, "r.yaml") } });
    const prov = { predicate: { buildDefinition: { resolvedDependencies: [{ name: "recipe", uri: "file:r.yaml", digest: { sha256 } }, { name: "files[0].source", uri: "file:motd", digest: { sha256: motd } }] } } };
    await writeFile(path.join(out, "provenance.json"), JSON.stringify(prov));
    assert.equal(await recipeOf(out, JSON.parse(await import("node:fs/promises").then((f) => f.readFile(path.join(out, "result.json"), "utf8")))), path.join(src, "r.yaml"));

    await writeFile(path.join(src, "motd"), "changed\n");
    await assert.rejects(
      recipeOf(out, { recipe: { name: "r", sha256, file: path.join(src, "r.yaml") } } as BuildResult),
      (e: unknown) => isKilnError(e) && e.exitCode === 2 && /the recipe changed since the build: files\[0\]\.source \(.*motd\) has sha256/.test(e.message),
    );
    await assert.rejects(
      recipeOf(out, { recipe: { name: "r", sha256: "1".repeat(64), file: path.join(src, "r.yaml") } } as BuildResult),
      (e: unknown) => isKilnError(e) && /r\.yaml has sha256 .* but OUT was built from 1{64}/.test(e.message),
    );
  });

  test("a result.json without recipe.file (before kiln.lock) is exit 2 naming the field", async () => {
    await assert.rejects(recipeOf(dir, { recipe: { name: "r", sha256: "0".repeat(64) } } as BuildResult), (e: unknown) => isKilnError(e) && e.exitCode === 2 && /recipe\.file: not recorded/.test(e.message));
  });
});

describe("kiln attest verify and the lock", () => {
  /** An out dir with kiln.lock, provenance naming (or not) the lock, SHA256SUMS and result.json. */
  async function attested(name: string, o: { nameLock: boolean; inputLock?: string; resultLock?: string }): Promise<string> {
    const out = path.join(dir, name);
    await mkdir(out, { recursive: true });
    await writeFile(path.join(out, "kiln.lock"), "{}\n");
    const lock = { name: "kiln.lock", path: "kiln.lock", type: ARTIFACT_KINDS.lock.type, ftype: "kiln.lock", ...(await fileDigests(path.join(out, "kiln.lock"))) };
    const recipeSha = "1".repeat(64);
    const statement = {
      _type: "https://in-toto.io/Statement/v1",
      subject: o.nameLock ? [{ name: "kiln.lock", digest: { sha256: lock.sha256 } }] : [],
      predicateType: "https://slsa.dev/provenance/v1",
      predicate: { buildDefinition: { externalParameters: { recipe: { name: "r", file: "r.yaml", digest: { sha256: recipeSha } }, ...(o.inputLock ? { lock: { file: "kiln.lock", digest: { sha256: o.inputLock } } } : {}) } } },
    };
    await writeFile(path.join(out, "provenance.json"), JSON.stringify(statement));
    const prov = { name: "provenance.json", path: "provenance.json", type: ARTIFACT_KINDS.provenance.type, ftype: "provenance.json", ...(await fileDigests(path.join(out, "provenance.json"))) };
    await writeFile(path.join(out, "SHA256SUMS"), formatSums([lock, prov]));
    const result: BuildResult = {
      recipe: { name: "r", sha256: recipeSha },
      ...(o.resultLock ? { lock: { file: "/x/kiln.lock", sha256: o.resultLock } } : {}),
      stages: [],
      artifacts: [lock, prov],
      verify: [],
      kiln: { version: "t", created: "", seconds: 0, unchangedImport: false },
    };
    await writeFile(path.join(out, "result.json"), JSON.stringify(result));
    return out;
  }
  const failures = async (out: string) => (await verifyAttestations(out)).findings.filter((f) => !f.ok).map((f) => f.message);

  test("a provenance naming this lock passes", async () => assert.deepEqual(await failures(await attested("ok", { nameLock: true })), []));
  test("a provenance that does not name kiln.lock fails naming provenance.json", async () =>
    assert.deepEqual(await failures(await attested("unnamed", { nameLock: false })), ["provenance.json: does not name kiln.lock (result.json lists it): the provenance is not of this lock"]));
  test("a locked build whose provenance names another input lock fails", async () => {
    const f = await failures(await attested("other-input", { nameLock: true, inputLock: "2".repeat(64), resultLock: "3".repeat(64) }));
    assert.equal(f.length, 1);
    assert.match(f[0]!, /^provenance\.json: names lock 2{64} as the build's input, but result.json says it was built from \/x\/kiln\.lock \(sha256 3{64}\)/);
  });
});
