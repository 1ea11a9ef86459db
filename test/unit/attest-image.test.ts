/**
 * Attestations of the service's images, without a build: an out dir shaped like a job's (two
 * flavors, a tarball, SBOMs, provenance, SHA256SUMS signed with a throwaway key) is published by
 * the job's own publishImage into a real catalog (PGlite) and file store, served on a real port.
 * Then `kiln attest verify IMAGE_ID` (the CLI, as a user runs it) passes with the signer's
 * keyring, fails naming the file and the store object when a stored byte changes, and says so
 * when the record names another recipe; an unknown id is exit 2; `kiln ims images describe`
 * lists the artifact links.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { ARTIFACT_KINDS } from "../../src/artifacts/types.js";
import { BOOT_IMAGES_BUCKET, MAX_MANIFEST_BYTES, readAll } from "../../src/catalog/objects.js";
import type { ImageRecord } from "../../src/catalog/records.js";
import { JobLog } from "../../src/jobs/job-log.js";
import { publishImage } from "../../src/jobs/publish.js";
import { openSigner, type Signer } from "../../src/streams/sign.js";
import { runKiln } from "../helpers/kiln.js";
import { ADMIN, READER, startTestService, type TestService } from "../helpers/service.js";
import { attestFakeOut, fakeOut, throwawayKey } from "../helpers/streams.js";

const RECIPE_SHA = "5".repeat(64);
const JOB = "00000000-0000-4000-8000-0000000000aa";

let s: TestService;
let signer: Signer;
let keyring: string;
let env: Record<string, string>;
let image: ImageRecord;

before(async () => {
  s = await startTestService();
  await s.app.listen({ host: "127.0.0.1", port: 0 });
  env = { KILN_URL: `http://127.0.0.1:${(s.app.server.address() as { port: number }).port}`, KILN_TOKEN: READER };
  const key = await throwawayKey(s.dir, "Kiln Service Images");
  signer = await openSigner(key.secret);
  keyring = path.join(s.dir, "service-key.gpg");
  await signer.exportPublicKey(keyring);
  const out = path.join(s.dir, "out");
  const result = await fakeOut(out, { seed: "a", flavors: ["generic", "cloud"], tarball: true });
  await attestFakeOut(out, { ...result, recipe: { name: "web", sha256: RECIPE_SHA } }, signer);
  const flavors = [{ flavor: "generic", kpackage: "linux-image-amd64", kernel_version: "6.1.0-28-amd64" }, { flavor: "cloud", kpackage: "linux-image-cloud-amd64", kernel_version: "6.1.0-28-cloud-amd64" }];
  const kiln = { job_id: JOB, source_image_id: null, flavors, package_diff: null, label: "candidate", recipe: { name: "web", sha256: RECIPE_SHA } };
  image = await publishImage(s.catalog, s.store, { outDir: out, name: "web", arch: "x86_64", jobId: JOB, kiln }, new JobLog(s.catalog, JOB));
});

after(async () => {
  await signer?.close();
  await s?.close();
});

test("the image record carries every attestation as an artifact of its manifest, typed, after IMS' own", async () => {
  const manifest = JSON.parse(await readFile(path.join(s.dir, "objects", BOOT_IMAGES_BUCKET, image.id, "manifest.json"), "utf8")) as { artifacts: Array<{ type: string; flavor?: string; link: { path: string } }> };
  const rows = manifest.artifacts.map((a) => [a.type, a.link.path.replace(`s3://${BOOT_IMAGES_BUCKET}/${image.id}/`, ""), a.flavor ?? "-"]);
  // out/manifest.json's artifacts (IMS' types, then the SBOMs), then the other kinds with an upload key.
  assert.deepEqual(rows.slice(-7), [
    ["application/spdx+json", "sbom.spdx.json", "-"],
    ["application/vnd.cyclonedx+json", "sbom.cdx.json", "-"],
    ["text/tab-separated-values", "rootfs.manifest", "-"],
    ["application/vnd.kiln.image.rootfs.tar+zstd", "rootfs.tar.zst", "-"],
    ["application/vnd.in-toto+json", "provenance.json", "-"],
    ["text/plain", "SHA256SUMS", "-"],
    ["application/pgp-signature", "SHA256SUMS.gpg", "-"],
  ]);
  assert.deepEqual(rows[0], ["application/vnd.cray.image.rootfs.squashfs", "rootfs", "-"], "the IMS artifacts first");
  assert.ok(rows.some(([t, k, f]) => t === ARTIFACT_KINDS.kernel.type && k === "cloud/kernel" && f === "cloud"), "a second flavor under its folder");
  const rec = (await s.call("GET", `/v3/images/${image.id}`)).json() as ImageRecord;
  assert.deepEqual(rec.kiln?.recipe, { name: "web", sha256: RECIPE_SHA }, "the record says which recipe the provenance must name");
});

test("kiln ims images describe lists the artifact links, SBOMs and checksums included", async () => {
  const r = await runKiln(["ims", "images", "describe", image.id], { env });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^kiln\.recipe\.sha256: 5{64}$/m);
  assert.match(r.stdout, new RegExp(`^artifacts \\(s3://boot-images/${image.id}/manifest\\.json\\):$`, "m"));
  const rows: Array<[string, string, string]> = [
    ["sbom.spdx.json", "application/spdx+json", "sbom.spdx.json"],
    ["sbom.cdx.json", "application/vnd.cyclonedx+json", "sbom.cdx.json"],
    ["provenance.json", "application/vnd.in-toto+json", "provenance.json"],
    ["SHA256SUMS", "text/plain", "SHA256SUMS"],
    ["SHA256SUMS.gpg", "application/pgp-signature", "SHA256SUMS.gpg"],
    ["boot-kernel", "application/vnd.cray.image.kernel", "cloud/kernel"],
  ];
  for (const [name, type, key] of rows) {
    assert.match(r.stdout, new RegExp(`^  ${name.replaceAll(".", "\\.")} +\\S* +${type.replaceAll(".", "\\.").replaceAll("+", "\\+")} +s3://boot-images/${image.id}/${key.replaceAll(".", "\\.")}$`, "m"), name);
  }
  const json = await runKiln(["ims", "images", "describe", image.id, "--json"], { env });
  assert.equal((JSON.parse(json.stdout) as ImageRecord).id, image.id, "--json stays the record as IMS answers it");
});

test("kiln attest verify IMAGE_ID --keyring passes with the service's key, and fails without a signature it can check", async () => {
  const ok = await runKiln(["attest", "verify", image.id, "--keyring", keyring], { env });
  assert.equal(ok.code, 0, ok.stdout + ok.stderr);
  assert.match(ok.stdout, new RegExp(`^image ${image.id}: ok \\(\\d+ checks, signature good\\)$`, "m"));
  const other = await throwawayKey(s.dir, "Someone Else");
  const otherSigner = await openSigner(other.secret);
  const otherRing = path.join(s.dir, "other.gpg");
  try {
    await otherSigner.exportPublicKey(otherRing);
  } finally {
    await otherSigner.close();
  }
  const wrong = await runKiln(["attest", "verify", image.id, "--keyring", otherRing], { env });
  assert.equal(wrong.code, 1);
  assert.match(wrong.stdout, new RegExp(`^FAIL SHA256SUMS \\(s3://boot-images/${image.id}/SHA256SUMS\\): the signature SHA256SUMS\\.gpg does not verify`, "m"));
});

test("one changed byte of a stored artifact fails, naming the file and its object", async () => {
  const object = path.join(s.dir, "objects", BOOT_IMAGES_BUCKET, image.id, "cloud", "initrd");
  const bytes = await readFile(object);
  bytes[0] = bytes[0]! ^ 1;
  await writeFile(object, bytes);
  try {
    const r = await runKiln(["attest", "verify", image.id, "--keyring", keyring, "--json"], { env });
    assert.equal(r.code, 1, r.stderr);
    const report = JSON.parse(r.stdout) as { ok: boolean; findings: Array<{ file: string; ok: boolean; object?: string; message: string }> };
    const failed = report.findings.filter((f) => !f.ok);
    assert.deepEqual(failed.map((f) => [f.file, f.object]), [
      ["cloud/boot-initrd", `s3://boot-images/${image.id}/cloud/initrd`],
      ["cloud/boot-initrd", `s3://boot-images/${image.id}/cloud/initrd`],
    ], "SHA256SUMS and provenance.json each name it");
    assert.match(failed[0]!.message, /^cloud\/boot-initrd \(s3:\/\/boot-images\/.*\/cloud\/initrd\): checksum mismatch: SHA256SUMS says [0-9a-f]{64}, the file has [0-9a-f]{64}$/);
  } finally {
    bytes[0] = bytes[0]! ^ 1;
    await writeFile(object, bytes);
  }
});

test("a record naming another recipe than the stored provenance fails, naming provenance.json and the record", async () => {
  await s.catalog.update("images", image.id, (doc) => ({ ...doc, kiln: { ...doc.kiln!, recipe: { name: "web", sha256: "6".repeat(64) } } }));
  try {
    const r = await runKiln(["attest", "verify", image.id, "--keyring", keyring], { env });
    assert.equal(r.code, 1);
    assert.match(r.stdout, new RegExp(`^FAIL provenance\\.json \\(s3://boot-images/${image.id}/provenance\\.json\\): names recipe digest 5{64}, but image ${image.id}'s record says it was built from 6{64}$`, "m"));
  } finally {
    await s.catalog.update("images", image.id, (doc) => ({ ...doc, kiln: { ...doc.kiln!, recipe: { name: "web", sha256: RECIPE_SHA } } }));
  }
});

test("another image's validly signed set swapped into the store (a rollback by a store writer) fails, naming the record's digests", async () => {
  // An older build of the same recipe, signed by the same key: everything verify checked before
  // this (signature, checksums, recipe) holds for it. Only the record says which files are this image's.
  const oldOut = path.join(s.dir, "out-older");
  const oldResult = await fakeOut(oldOut, { seed: "older", flavors: ["generic", "cloud"], tarball: true });
  await attestFakeOut(oldOut, { ...oldResult, recipe: { name: "web", sha256: RECIPE_SHA } }, signer);
  const older = await publishImage(s.catalog, s.store, { outDir: oldOut, name: "web", arch: "x86_64", jobId: JOB, kiln: { ...image.kiln!, flavors: image.kiln!.flavors } }, new JobLog(s.catalog, JOB));
  const ours = await s.store.list(BOOT_IMAGES_BUCKET, `${image.id}/`);
  for (const o of ours) await s.store.copy(BOOT_IMAGES_BUCKET, o.key, `backup/${o.key}`);
  try {
    for (const o of await s.store.list(BOOT_IMAGES_BUCKET, `${older.id}/`)) {
      const to = o.key.replace(older.id, image.id);
      if (!o.key.endsWith("/manifest.json")) await s.store.copy(BOOT_IMAGES_BUCKET, o.key, to);
      else {
        const body = (await readAll(await s.store.get(BOOT_IMAGES_BUCKET, o.key), MAX_MANIFEST_BYTES)).toString("utf8").replaceAll(older.id, image.id);
        await s.store.put(BOOT_IMAGES_BUCKET, to, body, { contentType: "application/json" });
      }
    }
    const r = await runKiln(["attest", "verify", image.id, "--keyring", keyring, "--json"], { env });
    assert.equal(r.code, 1, r.stdout + r.stderr);
    const report = JSON.parse(r.stdout) as { ok: boolean; signed: boolean; findings: Array<{ file: string; ok: boolean; object?: string; message: string }> };
    assert.equal(report.signed, true);
    const failed = report.findings.filter((f) => !f.ok);
    const sums = failed.find((f) => f.file === "SHA256SUMS");
    assert.ok(sums, JSON.stringify(failed, null, 1));
    assert.match(sums.message, new RegExp(`^SHA256SUMS \\(s3://boot-images/${image.id}/SHA256SUMS\\): the store's file has sha256 [0-9a-f]{64}, but image ${image.id}'s record says its job published [0-9a-f]{64}: the signed set is not this image's$`));
    const squash = failed.find((f) => f.file === "squashfs");
    assert.ok(squash, "the artifact whose digest differs is named too");
    assert.match(squash.message, new RegExp(`^squashfs \\(s3://boot-images/${image.id}/rootfs\\): SHA256SUMS names it with sha256 [0-9a-f]{64}, but image ${image.id}'s record says [0-9a-f]{64}$`));
    assert.ok(failed.some((f) => f.file === "provenance.json" && /subject squashfs has sha256 [0-9a-f]{64}, but image .*'s record says [0-9a-f]{64}/.test(f.message)), "the provenance's subjects too");
  } finally {
    for (const o of ours) await s.store.copy(BOOT_IMAGES_BUCKET, `backup/${o.key}`, o.key);
  }
  const again = await runKiln(["attest", "verify", image.id, "--keyring", keyring], { env });
  assert.equal(again.code, 0, again.stdout + again.stderr);
});

test("the record keeps the sha256 of every artifact its job published, by out-dir path", async () => {
  const rec = (await s.call("GET", `/v3/images/${image.id}`)).json() as ImageRecord;
  const result = JSON.parse(await readFile(path.join(s.dir, "out", "result.json"), "utf8")) as { artifacts: Array<{ path: string; sha256: string }> };
  assert.deepEqual(rec.kiln?.artifact_sha256, Object.fromEntries(result.artifacts.map((a) => [a.path, a.sha256]).sort(([a], [b]) => (a! < b! ? -1 : 1))));
});

test("an unknown image id is exit 2 with a clear message; a UUID-named folder is still an out dir", async () => {
  const unknown = "0f0f0f0f-0000-4000-8000-000000000000";
  const r = await runKiln(["attest", "verify", unknown, "--keyring", keyring], { env });
  assert.equal(r.code, 2, r.stdout + r.stderr);
  assert.match(r.stderr, new RegExp(`image ${unknown}: no such image at http://127\\.0\\.0\\.1:\\d+`));
  const noUrl = await runKiln(["attest", "verify", unknown], { env: { KILN_URL: "", KILN_TOKEN: ADMIN } });
  assert.equal(noUrl.code, 2);
  const folder = path.join(s.dir, unknown);
  await rm(folder, { recursive: true, force: true });
  await mkdir(folder);
  const asDir = await runKiln(["attest", "verify", unknown], { env, cwd: s.dir });
  assert.equal(asDir.code, 2);
  assert.match(asDir.stderr, /not a Kiln out dir \(no result\.json/);
});

test("a manifest whose flavor would leave the scratch folder, or whose link is no s3 path, is a failure naming it, not a path", async () => {
  const id = "0e0e0e0e-0000-4000-8000-000000000001";
  const body = "kernel bytes\n";
  await s.store.put(BOOT_IMAGES_BUCKET, `${id}/kernel`, body, { contentType: ARTIFACT_KINDS.kernel.type });
  const manifest = { version: "1.0", artifacts: [
    { type: ARTIFACT_KINDS.kernel.type, flavor: "../../escape", md5: "", link: { path: `s3://${BOOT_IMAGES_BUCKET}/${id}/kernel`, type: "s3" } },
    { type: ARTIFACT_KINDS.initrd.type, flavor: "generic", md5: "", link: { path: 42, type: "s3" } },
  ] };
  const m = await s.store.put(BOOT_IMAGES_BUCKET, `${id}/manifest.json`, JSON.stringify(manifest), { contentType: "application/json" });
  await s.catalog.insert("images", { id, created: "2026-12-03T10:00:00.000000", name: "odd", arch: "x86_64", metadata: {}, link: { path: `s3://${BOOT_IMAGES_BUCKET}/${id}/manifest.json`, etag: m.etag, type: "s3" } });
  const r = await runKiln(["attest", "verify", id], { env });
  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.match(r.stdout, /^FAIL s3:\/\/boot-images\/.*\/kernel: the manifest gives it flavor "\.\.\/\.\.\/escape", which is no flavor name$/m);
  assert.match(r.stdout, /^FAIL boot-initrd: the manifest links it as 42, not an s3:\/\/bucket\/key path$/m);
  assert.match(r.stdout, /^FAIL SHA256SUMS: missing/m);
});

test("kiln serve with a --sign-key gpg cannot sign with stops at start with exit 2, naming the key", async () => {
  const r = await runKiln(["serve", "--data-dir", path.join(s.dir, "bad-key-data"), "--listen", "127.0.0.1:0", "--sign-key", keyring, "--work-dir", path.join(s.dir, "bad-key-work"), "--cache-dir", path.join(s.dir, "bad-key-cache")]);
  assert.equal(r.code, 2, r.stdout + r.stderr);
  assert.match(r.stderr, new RegExp(`--sign-key ${keyring.replaceAll(".", "\\.")}: no secret key in that file`), "a public keyring is no signing key");
});
