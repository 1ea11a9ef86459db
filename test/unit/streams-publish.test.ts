// Publishing fake builds into a stream and checking it with the checker: names, fields, layout,
// shared files, signatures, and what the checker says when a file or a signature is corrupted.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { checkStream, openSource } from "../../src/streams/check.js";
import { type IndexFile, type ProductsFile } from "../../src/streams/format.js";
import { publish, type PublishOptions } from "../../src/streams/publish.js";
import { openSigner } from "../../src/streams/sign.js";
import { attestFakeOut, fakeOut, throwawayKey } from "../helpers/streams.js";

describe("kiln streams publish", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "kiln-streams-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  const opts = (to: string, extra: Partial<PublishOptions> = {}): PublishOptions => ({
    to, label: "candidate", naming: { prefix: "org.kiln" }, graceSeconds: 3 * 86400, now: new Date("2025-07-24T08:01:49Z"), ...extra,
  });

  test("two builds of two flavors make two versions of two products that MAAS would take", async () => {
    await fakeOut(path.join(dir, "out-1"), { seed: "1" });
    await fakeOut(path.join(dir, "out-2"), { seed: "2" });
    const stream = path.join(dir, "plain");
    const r = await publish([path.join(dir, "out-1"), path.join(dir, "out-2")], opts(stream));
    assert.deepEqual(r.published.map((p) => p.version), ["20250724", "20250724.1"]);

    const index = JSON.parse(await readFile(path.join(stream, "streams/v1/index.json"), "utf8")) as IndexFile;
    assert.deepEqual(index.index["org.kiln:candidate:v3:download"], {
      datatype: "image-ids",
      format: "products:1.0",
      path: "streams/v1/org.kiln:candidate:v3:download.json",
      products: ["org.kiln.candidate:v3:boot:bookworm:amd64:generic", "org.kiln.candidate:v3:boot:bookworm:amd64:generic-cloud"],
      updated: "Thu, 24 Jul 2025 08:01:49 +0000",
    });
    const text = await readFile(path.join(stream, "streams/v1/org.kiln:candidate:v3:download.json"), "utf8");
    assert.match(text, /^\{\n "content_id": "org.kiln:candidate:v3:download",\n "datatype": "image-ids",\n "format": "products:1.0",\n "products": \{/);
    assert.ok(text.endsWith("}\n"));
    const products = JSON.parse(text) as ProductsFile;
    const cloud = products.products["org.kiln.candidate:v3:boot:bookworm:amd64:generic-cloud"]!;
    const { versions, ...fields } = cloud;
    assert.deepEqual(fields, {
      arch: "amd64", kflavor: "cloud", krel: "bookworm", label: "candidate", os: "debian", release: "bookworm",
      release_codename: "Bookworm", release_title: "12 (Bookworm)", subarch: "generic", subarches: "generic",
      support_eol: "2026-07-11", support_esm_eol: "2028-06-30", version: "12",
    });
    const items = versions["20250724.1"]!.items;
    assert.deepEqual(Object.keys(items).sort(), ["boot-initrd", "boot-kernel", "boot-params", "manifest", "squashfs"]);
    assert.equal(items["boot-kernel"]!.path, "bookworm/amd64/20250724.1/generic/cloud/boot-kernel");
    assert.equal(items["boot-kernel"]!.kpackage, "linux-image-cloud-amd64");
    assert.equal(items["boot-initrd"]!.kpackage, "linux-image-cloud-amd64");
    assert.equal(items.manifest!.ftype, "manifest");
    assert.equal(items.manifest!.path, "bookworm/amd64/20250724.1/squashfs.manifest");
    assert.equal(typeof items.squashfs!.size, "number");
    // One squashfs per version, shared by both flavors.
    const generic = products.products["org.kiln.candidate:v3:boot:bookworm:amd64:generic"]!.versions["20250724.1"]!.items;
    assert.deepEqual(generic.squashfs, items.squashfs);
    assert.equal(items.squashfs!.path, "bookworm/amd64/20250724.1/squashfs");

    const report = await checkStream(openSource(stream));
    assert.deepEqual(report.violations, []);
    assert.equal(report.products, 2);
    assert.equal(report.versions, 4);
    assert.equal(report.files, 2 * (2 + 2 * 3), "squashfs + manifest + 3 files per flavor, per version");
  });

  test("a corrupted file fails the check with its path", async () => {
    const stream = path.join(dir, "plain");
    await writeFile(path.join(stream, "bookworm/amd64/20250724/generic/cloud/boot-initrd"), "tampered\n");
    const report = await checkStream(openSource(stream));
    assert.equal(report.violations.length, 2, JSON.stringify(report.violations));
    assert.match(report.violations[0]!.message, /boot-initrd: size is 9, the stream says \d+/);
    assert.match(report.violations[1]!.message, /boot-initrd: sha256 is [0-9a-f]{64}, the stream says/);
  });

  test("signed: .sjson, .json.gpg and index.sjson pointing at .sjson; a bad signature fails the check", async () => {
    const key = await throwawayKey(dir);
    const signer = await openSigner(key.secret);
    const stream = path.join(dir, "signed");
    const keyring = path.join(dir, "keyring.gpg");
    try {
      await publish([path.join(dir, "out-1")], opts(stream, { signer }));
      await signer.exportPublicKey(keyring);
    } finally {
      await signer.close();
    }
    const bytes = await readFile(keyring);
    assert.ok((bytes[0]! & 0x80) !== 0 && !bytes.subarray(0, 20).toString("latin1").includes("BEGIN"), "binary keyring");
    const sindex = await readFile(path.join(stream, "streams/v1/index.sjson"), "utf8");
    assert.match(sindex, /^-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\n\{\n/);
    assert.match(sindex, /"path": "streams\/v1\/org.kiln:candidate:v3:download.sjson"/);
    for (const f of ["index.json.gpg", "org.kiln:candidate:v3:download.sjson", "org.kiln:candidate:v3:download.json.gpg"]) await stat(path.join(stream, "streams/v1", f));
    assert.match(await readFile(path.join(stream, "streams/v1/index.json.gpg"), "utf8"), /^-----BEGIN PGP SIGNATURE-----/);

    const good = await checkStream(openSource(stream), { keyring });
    assert.deepEqual(good.violations, []);
    assert.equal(good.signaturesChecked, 4);

    // Another key's keyring: every signature is unknown.
    const other = await throwawayKey(dir, "Someone Else");
    const otherSigner = await openSigner(other.secret);
    const otherRing = path.join(dir, "other.gpg");
    await otherSigner.exportPublicKey(otherRing);
    await otherSigner.close();
    const wrongKey = await checkStream(openSource(stream), { keyring: otherRing, files: false });
    assert.equal(wrongKey.violations.filter((v) => /signature does not verify/.test(v.message)).length, 4);

    // Tamper with the signed products file's content: its signature breaks, and it no longer says what the .json says.
    const sjson = path.join(stream, "streams/v1/org.kiln:candidate:v3:download.sjson");
    await writeFile(sjson, (await readFile(sjson, "utf8")).replace('"arch": "amd64"', '"arch": "arm64"'));
    const bad = await checkStream(openSource(stream), { keyring, files: false });
    const messages = bad.violations.map((v) => `${v.where}: ${v.message}`);
    assert.ok(messages.some((m) => /download\.sjson: signature does not verify/.test(m)), messages.join("\n"));
    assert.ok(messages.some((m) => /download\.sjson: says something else than/.test(m)), messages.join("\n"));
  });

  test("a signed stream refuses an unsigned publish", async () => {
    await assert.rejects(publish([path.join(dir, "out-2")], opts(path.join(dir, "signed"))), /is a signed stream: pass --sign-key/);
  });

  test("an extra artifact of the whole build is an extra item of every flavor's product, under its own ftype", async () => {
    const out = path.join(dir, "out-tarball");
    await fakeOut(out, { seed: "5", tarball: true });
    const stream = path.join(dir, "extras");
    await publish([out], opts(stream));
    const p = JSON.parse(await readFile(path.join(stream, "streams/v1/org.kiln:candidate:v3:download.json"), "utf8")) as ProductsFile;
    for (const name of Object.keys(p.products)) {
      const tar = p.products[name]!.versions["20250724"]!.items["root-tar.zst"]!;
      assert.deepEqual({ ftype: tar.ftype, path: tar.path }, { ftype: "root-tar.zst", path: "bookworm/amd64/20250724/rootfs.tar.zst" });
    }
    assert.deepEqual((await checkStream(openSource(stream))).violations, []);
  });

  test("a build's SBOMs, provenance and signed SHA256SUMS are extra items of every flavor's product; the checker (MAAS' rules) accepts them", async () => {
    const out = path.join(dir, "out-attested");
    const key = await throwawayKey(dir, "Kiln Attest Test");
    const signer = await openSigner(key.secret);
    try {
      await attestFakeOut(out, await fakeOut(out, { seed: "7" }), signer);
    } finally {
      await signer.close();
    }
    const stream = path.join(dir, "attested");
    await publish([out], opts(stream));
    const p = JSON.parse(await readFile(path.join(stream, "streams/v1/org.kiln:candidate:v3:download.json"), "utf8")) as ProductsFile;
    for (const name of ["org.kiln.candidate:v3:boot:bookworm:amd64:generic", "org.kiln.candidate:v3:boot:bookworm:amd64:generic-cloud"]) {
      const items = p.products[name]!.versions["20250724"]!.items;
      const extra = Object.fromEntries(Object.entries(items).filter(([k]) => !["boot-kernel", "boot-initrd", "boot-params", "manifest", "squashfs"].includes(k)).map(([k, i]) => [k, [i.ftype, i.path]]));
      assert.deepEqual(extra, {
        "sbom.spdx.json": ["sbom.spdx.json", "bookworm/amd64/20250724/sbom.spdx.json"],
        "sbom.cdx.json": ["sbom.cdx.json", "bookworm/amd64/20250724/sbom.cdx.json"],
        "provenance.json": ["provenance.json", "bookworm/amd64/20250724/provenance.json"],
        sha256sums: ["sha256sums", "bookworm/amd64/20250724/SHA256SUMS"],
        "sha256sums.gpg": ["sha256sums.gpg", "bookworm/amd64/20250724/SHA256SUMS.gpg"],
      }, name);
    }
    const report = await checkStream(openSource(stream));
    assert.deepEqual(report.violations, []);
    assert.equal(report.files, 2 + 2 * 3 + 5, "squashfs + manifest + 3 files per flavor + the 5 attestations, once each");
  });

  test("refuses a build whose file changed after the build, or that lacks what MAAS needs", async () => {
    const out = path.join(dir, "out-bad");
    await fakeOut(out, { seed: "3" });
    await writeFile(path.join(out, "generic/boot-kernel"), "changed");
    await assert.rejects(publish([out], opts(path.join(dir, "bad"))), /generic\/boot-kernel changed since the build/);
    const noFlavor = path.join(dir, "out-noflavor");
    await fakeOut(noFlavor, { seed: "4", flavors: [] });
    await assert.rejects(publish([noFlavor], opts(path.join(dir, "bad"))), /MAAS needs a kernel flavor/);
  });
});
