// kiln attest verify's checks on out dirs made by hand (no build, no root): each failure is
// reported, naming its file; paths outside the out dir are refused, not read.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { BuildResult } from "../../src/artifacts/result.js";
import { ARTIFACT_KINDS } from "../../src/artifacts/types.js";
import { fileDigests, sha256Hex } from "../../src/cache/key.js";
import { formatSums } from "../../src/attest/sums.js";
import { verifyAttestations } from "../../src/attest/verify.js";
import { isKilnError } from "../../src/errors.js";

let dir: string;
before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "kiln-attest-verify-"));
});
after(() => rm(dir, { recursive: true, force: true }));

/** An out dir with a squashfs, provenance naming `recipeSha`, SHA256SUMS over both, result.json. */
async function outDir(name: string, o: { recipeSha?: string; provenanceRecipe?: string } = {}): Promise<string> {
  const out = path.join(dir, name);
  await mkdir(out, { recursive: true });
  const recipeSha = o.recipeSha ?? "1".repeat(64);
  await writeFile(path.join(out, "squashfs"), "the root");
  const squash = { name: "squashfs", path: "squashfs", type: ARTIFACT_KINDS.squashfs.type, ftype: "squashfs", ...(await fileDigests(path.join(out, "squashfs"))) };
  const statement = {
    _type: "https://in-toto.io/Statement/v1",
    subject: [{ name: "squashfs", digest: { sha256: squash.sha256 } }],
    predicateType: "https://slsa.dev/provenance/v1",
    predicate: { buildDefinition: { externalParameters: { recipe: { name: "r", file: "r.yaml", digest: { sha256: o.provenanceRecipe ?? recipeSha } } } } },
  };
  await writeFile(path.join(out, "provenance.json"), JSON.stringify(statement));
  const prov = { name: "provenance.json", path: "provenance.json", type: ARTIFACT_KINDS.provenance.type, ftype: "provenance.json", ...(await fileDigests(path.join(out, "provenance.json"))) };
  await writeFile(path.join(out, "SHA256SUMS"), formatSums([squash, prov]));
  const result = { recipe: { name: "r", sha256: recipeSha }, stages: [], artifacts: [squash, prov], verify: [], kiln: { version: "t", created: "", seconds: 0, unchangedImport: false } } satisfies BuildResult;
  await writeFile(path.join(out, "result.json"), JSON.stringify(result));
  return out;
}

const failures = (r: Awaited<ReturnType<typeof verifyAttestations>>) => r.findings.filter((f) => !f.ok).map((f) => f.message);

test("an untouched unsigned out dir passes; asking for a keyring then fails on the missing signature", async () => {
  const out = await outDir("good");
  const r = await verifyAttestations(out);
  assert.deepEqual(failures(r), []);
  assert.equal(r.ok, true);
  assert.equal(r.signed, false);
  const keyring = path.join(dir, "empty.gpg");
  await writeFile(keyring, "");
  assert.deepEqual(failures(await verifyAttestations(out, { keyring })), ["SHA256SUMS.gpg: missing: SHA256SUMS is not signed (build with --sign-key)"]);
});

test("provenance naming another recipe fails, naming provenance.json", async () => {
  const out = await outDir("other-recipe", { provenanceRecipe: "2".repeat(64) });
  assert.deepEqual(failures(await verifyAttestations(out)), [
    `provenance.json: names recipe digest ${"2".repeat(64)}, but result.json says it was built from ${"1".repeat(64)}`,
  ]);
});

test("every failure is reported: a missing file, an artifact not in SHA256SUMS, a changed file", async () => {
  const out = await outDir("several");
  await writeFile(path.join(out, "squashfs"), "changed");
  const text = `${"3".repeat(64)}  gone.img\n${formatSums([{ path: "squashfs", sha256: sha256Hex("the root") }])}`;
  await writeFile(path.join(out, "SHA256SUMS"), text);
  const f = failures(await verifyAttestations(out));
  assert.ok(f.includes("gone.img: missing (SHA256SUMS lists it)"), f.join("\n"));
  assert.ok(f.some((m) => m.startsWith("squashfs: checksum mismatch: SHA256SUMS says")), f.join("\n"));
  assert.ok(f.includes("provenance.json: not in SHA256SUMS, though result.json lists it as an artifact"), f.join("\n"));
  assert.ok(f.some((m) => m.startsWith("squashfs: does not match its digest in provenance.json")), f.join("\n"));
});

test("SHA256SUMS or provenance naming paths outside the out dir are failures naming the file", async () => {
  const out = await outDir("escape");
  await writeFile(path.join(out, "SHA256SUMS"), `${"4".repeat(64)}  ../../../etc/passwd\n`);
  const f = failures(await verifyAttestations(out));
  assert.ok(f.some((m) => m.startsWith('SHA256SUMS: line 1: not "<sha256>  <path inside the out dir>"')), f.join("\n"));
  const out2 = await outDir("escape-subject");
  const statement = { _type: "https://in-toto.io/Statement/v1", predicateType: "https://slsa.dev/provenance/v1", subject: [{ name: "/etc/passwd", digest: { sha256: "5".repeat(64) } }], predicate: { buildDefinition: { externalParameters: { recipe: { digest: { sha256: "1".repeat(64) } } } } } };
  await writeFile(path.join(out2, "provenance.json"), JSON.stringify(statement));
  const f2 = failures(await verifyAttestations(out2));
  assert.ok(f2.includes('provenance.json: subject "/etc/passwd" is not a path inside the out dir'), f2.join("\n"));
});

test("a folder without result.json is a usage error (exit 2), not a failure report", async () => {
  await assert.rejects(verifyAttestations(path.join(dir, "nothing")), (e: unknown) => isKilnError(e) && e.exitCode === 2 && /not a Kiln out dir/.test(e.message));
});
