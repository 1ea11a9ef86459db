// SBOM generation from a fake root: a dpkg status file, machine-readable and free-form copyright
// files, .debs in a package pool; the SPDX and CycloneDX documents validated against the vendored
// official schemas and by CycloneDX's own library.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import type { ResultArtifact } from "../../src/artifacts/result.js";
import { licenseFromCopyright, parseDpkgStatus, parseRelations, readRootPackages, spdxFromDebianName } from "../../src/attest/debian.js";
import { addedPackages, type ImageInventory } from "../../src/attest/inventory.js";
import { cyclonedxSbom } from "../../src/attest/sbom-cyclonedx.js";
import { spdxFlavorPackages, spdxSbom } from "../../src/attest/sbom-spdx.js";
import { cycloneDxLibraryErrors, cycloneDxSchemaErrors, spdxSchemaErrors } from "../helpers/sbom-schemas.js";

// spdx-expression-parse ships no types: it throws on what is not an SPDX license expression.
const parseSpdxExpression = createRequire(import.meta.url)("spdx-expression-parse") as (e: string) => unknown;

const DEP5 = (licenses: string[]) =>
  `Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\nUpstream-Name: x\n\n` +
  licenses.map((l, i) => `Files: part${i}/*\nCopyright: 2020 Someone\nLicense: ${l}\n`).join("\n") +
  `\nLicense: GPL-2+\n This program is free software …\n`;

const pkg = (name: string, version: string, arch: string, extra = "") =>
  `Package: ${name}\nStatus: install ok installed\nPriority: optional\nArchitecture: ${arch}\nVersion: ${version}\n${extra}Description: ${name}\n a package\n`;

const ROOT_STATUS = [
  pkg("libc6", "2.36-9+deb12u9", "amd64", "Source: glibc\nMulti-Arch: same\n"),
  pkg("bash", "5.2.15-2+b7", "amd64", "Source: bash (5.2.15-2)\nPre-Depends: libc6 (>= 2.36), libtinfo6 (>= 6)\nDepends: base-files (>= 2.1.12), debianutils (>= 5.6-0.1)\n"),
  pkg("base-files", "12.4+deb12u8", "amd64"),
  pkg("mawk", "1.3.4.20200120-3.1", "amd64", "Provides: awk\nDepends: libc6 (>= 2.33)\n"),
  pkg("needs-awk", "1:2.0~rc1-1", "all", "Depends: gawk | awk, missing-pkg\n"),
  "Package: removed-one\nStatus: deinstall ok config-files\nArchitecture: amd64\nVersion: 1.0\nDescription: gone\n",
].join("\n");

const FLAVOR_EXTRA = [
  pkg("linux-image-6.1.0-28-amd64", "6.1.119-1", "amd64", "Source: linux-signed-amd64 (6.1.119+1)\nDepends: kmod, linux-base (>= 4.3~)\n"),
  pkg("linux-base", "4.9", "all"),
  pkg("kmod", "30+20221128-1", "amd64", "Depends: libc6 (>= 2.34)\n"),
].join("\n");

const ARTIFACTS: ResultArtifact[] = [
  { name: "squashfs", path: "squashfs", type: "application/vnd.cray.image.rootfs.squashfs", ftype: "squashfs", sha256: "a".repeat(64), md5: "b".repeat(32), size: 10 },
  { name: "boot-kernel", path: "generic/boot-kernel", type: "application/vnd.cray.image.kernel", ftype: "boot-kernel", sha256: "c".repeat(64), md5: "d".repeat(32), size: 5, flavor: "generic", kpackage: "linux-image-amd64" },
];

let dir: string;
let root: string;
let flavorRoot: string;
let pool: string;
let inv: ImageInventory;
const bashDeb = Buffer.from("not really a deb, but bytes to digest");

async function writeRoot(at: string, status: string): Promise<void> {
  await mkdir(path.join(at, "var/lib/dpkg"), { recursive: true });
  await writeFile(path.join(at, "var/lib/dpkg/status"), status);
  const doc = (p: string) => path.join(at, "usr/share/doc", p);
  for (const p of ["bash", "base-files", "mawk", "libc6", "kmod", "linux-base"]) await mkdir(doc(p), { recursive: true });
  await writeFile(path.join(doc("bash"), "copyright"), DEP5(["GPL-3+", "GPL-3+", "BSD-3-clause or GPL-2+", "Expat and ISC"]));
  await writeFile(path.join(doc("base-files"), "copyright"), "This is the Debian prepackaged version of base-files.\nIt is under the GPL.\n");
  await writeFile(path.join(doc("mawk"), "copyright"), DEP5(["GPL-2", "X11-with-something special"]));
  // libc6's copyright is a link that, followed on the host, would read the host's /etc/hostname:
  // inside the root it points at nothing, so its license is NOASSERTION.
  await symlink("/etc/hostname", path.join(doc("libc6"), "copyright"));
  await writeFile(path.join(doc("kmod"), "copyright"), DEP5(["LGPL-2.1+", "GPL-2+"]));
  await writeFile(path.join(doc("linux-base"), "copyright"), DEP5(["GPL-2"]));
  // needs-awk's doc dir is a link to mawk's, as dh_installdocs --link-doc makes them.
  await symlink("/usr/share/doc/mawk", doc("needs-awk"));
}

before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "kiln-sbom-"));
  root = path.join(dir, "root");
  flavorRoot = path.join(dir, "flavor");
  pool = path.join(dir, "pool");
  await writeRoot(root, ROOT_STATUS);
  await writeRoot(flavorRoot, `${ROOT_STATUS}\n${FLAVOR_EXTRA}`);
  await mkdir(pool, { recursive: true });
  await writeFile(path.join(pool, "bash_5.2.15-2+b7_amd64.deb"), bashDeb);
  await writeFile(path.join(pool, "needs-awk_1%3a2.0~rc1-1_all.deb"), "epoch in the file name");
  const rootPackages = await readRootPackages(root, { debDirs: [pool] });
  const all = await readRootPackages(flavorRoot, { debDirs: [pool] });
  inv = {
    name: "unit-image",
    recipeSha256: "e".repeat(64),
    kilnVersion: "0.0.0-test",
    created: new Date("2026-01-02T03:04:05.678Z"),
    distro: "debian-12",
    root: rootPackages,
    flavors: [{ flavor: "generic", packages: addedPackages(rootPackages, all) }],
    artifacts: ARTIFACTS,
  };
});

after(() => rm(dir, { recursive: true, force: true }));

describe("reading a root", () => {
  test("dpkg status: installed packages only, relations without versions, qualifiers or alternatives lost", () => {
    const ps = parseDpkgStatus(ROOT_STATUS);
    assert.deepEqual(ps.map((p) => p.name), ["base-files", "bash", "libc6", "mawk", "needs-awk"], "removed-one is config-files only: not installed");
    const bash = ps.find((p) => p.name === "bash")!;
    assert.equal(bash.source, undefined, "a Source naming the package itself (with a binNMU version) is no other source");
    assert.equal(parseDpkgStatus(FLAVOR_EXTRA).find((p) => p.name.startsWith("linux-image"))!.source, "linux-signed-amd64", "the Source field's version is dropped");
    assert.deepEqual(bash.depends, [["libc6"], ["libtinfo6"], ["base-files"], ["debianutils"]], "Pre-Depends then Depends");
    assert.deepEqual(parseRelations("a (>= 1) | b:any, c [amd64] <!nocheck>"), [["a", "b"], ["c"]]);
    assert.equal(ps.find((p) => p.name === "libc6")!.source, "glibc");
  });

  test("licenses: DEP-5 files become SPDX expressions, anything else NOASSERTION", () => {
    const refs: Record<string, string> = {};
    assert.equal(licenseFromCopyright(DEP5(["GPL-2+"]), refs), "GPL-2.0-or-later");
    assert.equal(licenseFromCopyright(DEP5(["GPL-2+", "LGPL-2.1+", "GPL-2+"]), refs), "GPL-2.0-or-later AND LGPL-2.1-or-later");
    assert.equal(licenseFromCopyright(DEP5(["BSD-3-clause or GPL-2+"]), refs), "BSD-3-Clause OR GPL-2.0-or-later");
    assert.equal(licenseFromCopyright("Copyright 1999 someone; GPL\n", refs), "NOASSERTION");
    assert.equal(licenseFromCopyright(undefined, refs), "NOASSERTION");
    assert.deepEqual(refs, {}, "no LicenseRef for names SPDX knows");
    assert.equal(spdxFromDebianName("Expat", refs), "MIT");
    assert.equal(spdxFromDebianName("Apache-2", refs), "Apache-2.0");
    assert.equal(spdxFromDebianName("GFDL-1.3+", refs), "GFDL-1.3-or-later");
    assert.equal(spdxFromDebianName("public-domain", refs), "LicenseRef-public-domain");
    assert.equal(spdxFromDebianName("GPL-2+ with OpenSSL exception", refs), "LicenseRef-GPL-2-or-later-with-OpenSSL-exception");
    assert.deepEqual(refs, { "LicenseRef-public-domain": "public-domain", "LicenseRef-GPL-2-or-later-with-OpenSSL-exception": "GPL-2+ with OpenSSL exception" });
  });

  test("packages of a root: licenses read inside the root (links too), .deb digests from the pool", () => {
    const by = (n: string) => inv.root.find((p) => p.name === n)!;
    assert.equal(by("bash").license, "(BSD-3-Clause OR GPL-2.0-or-later) AND (MIT AND ISC) AND GPL-3.0-or-later");
    for (const p of inv.root.filter((x) => x.license !== "NOASSERTION")) assert.doesNotThrow(() => parseSpdxExpression(p.license), p.license);
    assert.equal(by("base-files").license, "NOASSERTION", "a free-form copyright file");
    assert.equal(by("libc6").license, "NOASSERTION", "a link out of the root is not followed onto the host");
    assert.equal(by("needs-awk").license, by("mawk").license, "a linked doc dir is followed inside the root");
    assert.match(by("mawk").license, /LicenseRef-X11-with-something-special/);
    assert.deepEqual(by("mawk").licenseRefs, { "LicenseRef-X11-with-something-special": "X11-with-something special" });
    assert.equal(by("bash").debSha256, createHash("sha256").update(bashDeb).digest("hex"));
    assert.ok(by("needs-awk").debSha256, "the epoch's ':' is %3a in apt's file names");
    assert.equal(by("libc6").debSha256, undefined, "no .deb at hand");
  });

  test("a flavor adds only what the root does not have in that version", () => {
    assert.deepEqual(inv.flavors[0]!.packages.map((p) => p.name), ["kmod", "linux-base", "linux-image-6.1.0-28-amd64"]);
  });
});

describe("SPDX 2.3", () => {
  test("is valid against the official schema, and the validator does reject a broken one", () => {
    const doc = spdxSbom(inv);
    assert.deepEqual(spdxSchemaErrors(doc), []);
    const broken = { ...doc, packages: doc.packages.map((p, i) => (i === 0 ? { ...p, downloadLocation: undefined } : p)) };
    assert.notDeepEqual(spdxSchemaErrors(JSON.parse(JSON.stringify(broken))), []);
  });

  test("the image is the described package; packages carry purl, .deb sha256 and licenses; Depends are DEPENDS_ON", () => {
    const doc = spdxSbom(inv);
    assert.deepEqual(doc.documentDescribes, ["SPDXRef-Image"]);
    assert.equal(doc.creationInfo.created, "2026-01-02T03:04:05Z");
    const byName = (n: string) => doc.packages.find((p) => p.name === n)!;
    const bash = byName("bash");
    assert.equal(bash.externalRefs![0]!.referenceLocator, "pkg:deb/debian/bash@5.2.15-2+b7?arch=amd64&distro=debian-12");
    assert.deepEqual(bash.checksums, [{ algorithm: "SHA256", checksumValue: createHash("sha256").update(bashDeb).digest("hex") }]);
    assert.equal(bash.licenseDeclared, "(BSD-3-Clause OR GPL-2.0-or-later) AND (MIT AND ISC) AND GPL-3.0-or-later");
    assert.equal(byName("libc6").checksums, undefined);
    assert.match(byName("libc6").comment!, /no longer at hand/);
    const squash = byName("squashfs");
    assert.deepEqual(squash.checksums, [{ algorithm: "SHA256", checksumValue: "a".repeat(64) }, { algorithm: "MD5", checksumValue: "b".repeat(32) }]);
    const rel = (a: string, t: string, b: string) => doc.relationships.some((r) => r.spdxElementId === a && r.relationshipType === t && r.relatedSpdxElement === b);
    assert.ok(rel("SPDXRef-DOCUMENT", "DESCRIBES", "SPDXRef-Image"));
    assert.ok(rel("SPDXRef-Image", "CONTAINS", squash.SPDXID));
    assert.ok(rel("SPDXRef-Image", "CONTAINS", bash.SPDXID));
    assert.ok(rel(bash.SPDXID, "DEPENDS_ON", byName("libc6").SPDXID));
    assert.ok(rel(byName("needs-awk").SPDXID, "DEPENDS_ON", byName("mawk").SPDXID), "awk is provided by mawk");
    const flavor = byName("unit-image flavor generic");
    assert.ok(rel("SPDXRef-Image", "CONTAINS", flavor.SPDXID));
    assert.ok(rel(flavor.SPDXID, "CONTAINS", byName("generic/boot-kernel").SPDXID), "a flavor's artifacts are in the flavor");
    assert.ok(rel(flavor.SPDXID, "CONTAINS", byName("kmod").SPDXID));
    assert.ok(!rel("SPDXRef-Image", "CONTAINS", byName("kmod").SPDXID), "a flavor's package is not the root's");
    assert.ok(rel(byName("kmod").SPDXID, "DEPENDS_ON", byName("libc6").SPDXID), "flavor packages depend on root packages");
    const ids = new Set(doc.packages.map((p) => p.SPDXID));
    assert.equal(ids.size, doc.packages.length, "SPDX ids are unique");
    for (const r of doc.relationships) assert.ok(r.spdxElementId === "SPDXRef-DOCUMENT" || ids.has(r.spdxElementId), r.spdxElementId);
    for (const r of doc.relationships) assert.ok(ids.has(r.relatedSpdxElement), r.relatedSpdxElement);
    assert.deepEqual(doc.hasExtractedLicensingInfos!.map((l) => l.licenseId), ["LicenseRef-X11-with-something-special"], "every LicenseRef used is declared");
  });

  test("the same inputs give the same bytes; other artifacts another namespace", () => {
    assert.equal(JSON.stringify(spdxSbom(inv)), JSON.stringify(spdxSbom({ ...inv })));
    const other = spdxSbom({ ...inv, artifacts: [{ ...ARTIFACTS[0]!, sha256: "f".repeat(64) }] });
    assert.notEqual(other.documentNamespace, spdxSbom(inv).documentNamespace);
  });
});

describe("CycloneDX 1.6", () => {
  test("is valid against the official schema and for CycloneDX's own library; both reject a broken one", async () => {
    const bom = cyclonedxSbom(inv);
    assert.deepEqual(cycloneDxSchemaErrors(bom), []);
    assert.equal(await cycloneDxLibraryErrors(JSON.stringify(bom)), null);
    const broken = { ...bom, components: [{ ...bom.components[0]!, type: "no-such-type" }] };
    assert.notDeepEqual(cycloneDxSchemaErrors(broken), []);
    assert.notEqual(await cycloneDxLibraryErrors(JSON.stringify(broken)), null);
  });

  test("components: packages by purl with .deb hash and license, artifacts with hashes; dependencies resolved", () => {
    const bom = cyclonedxSbom(inv);
    assert.match(bom.serialNumber, /^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.equal(bom.metadata.component.name, "unit-image");
    const purl = "pkg:deb/debian/needs-awk@1:2.0~rc1-1?arch=all&distro=debian-12";
    const needsAwk = bom.components.find((c) => c.name === "needs-awk")!;
    assert.equal(needsAwk.purl, purl);
    assert.equal(needsAwk["bom-ref"], purl);
    const bash = bom.components.find((c) => c.name === "bash")!;
    assert.deepEqual(bash.licenses, [{ expression: "(BSD-3-Clause OR GPL-2.0-or-later) AND (MIT AND ISC) AND GPL-3.0-or-later" }]);
    assert.equal(bom.components.find((c) => c.name === "base-files")!.licenses, undefined, "NOASSERTION: no licenses stated");
    assert.deepEqual(bom.components.find((c) => c.name === "generic/boot-kernel")!.hashes, [{ alg: "SHA-256", content: "c".repeat(64) }, { alg: "MD5", content: "d".repeat(32) }]);
    const deps = (ref: string) => bom.dependencies.find((d) => d.ref === ref)?.dependsOn ?? [];
    assert.ok(deps(needsAwk["bom-ref"]).includes(bom.components.find((c) => c.name === "mawk")!["bom-ref"]));
    assert.ok(deps("kiln:flavor:generic").includes(bom.components.find((c) => c.name === "kmod")!["bom-ref"]));
    assert.ok(deps("kiln:image").includes(bash["bom-ref"]));
    assert.ok(!deps("kiln:image").includes(bom.components.find((c) => c.name === "kmod")!["bom-ref"]));
    assert.equal(JSON.stringify(cyclonedxSbom(inv)), JSON.stringify(bom), "deterministic");
  });
});

describe("a flavor carried over by a customize job", () => {
  test("its packages read back from the source's SPDX give the same SBOMs as its layer did", async () => {
    const source = spdxSbom(inv);
    const carried = spdxFlavorPackages(source, "generic");
    assert.ok(carried);
    const kernel = carried.find((p) => p.name === "linux-image-6.1.0-28-amd64")!;
    const orig = inv.flavors[0]!.packages.find((p) => p.name === kernel.name)!;
    assert.deepEqual([kernel.version, kernel.arch, kernel.source, kernel.license, kernel.debSha256], [orig.version, orig.arch, orig.source, orig.license, orig.debSha256]);
    assert.deepEqual(kernel.depends, [["kmod"], ["linux-base"]], "dependencies as the source resolved them");
    // A customized image whose root is the source's: the flavor's packages, purls and dependencies are the source's.
    const customized: ImageInventory = { ...inv, flavors: [{ flavor: "generic", packages: addedPackages(inv.root, carried) }] };
    assert.deepEqual(spdxSbom(customized), source);
    assert.deepEqual(cyclonedxSbom(customized), cyclonedxSbom(inv));
    assert.deepEqual(spdxSchemaErrors(spdxSbom(customized)), []);
    assert.equal(spdxFlavorPackages(source, "cloud"), undefined, "a flavor the source does not have");
  });

  test("a LicenseRef the source document does not declare becomes NOASSERTION (it could not be declared again)", () => {
    const source = spdxSbom(inv);
    const kmod = source.packages.find((p) => p.name === "kmod")!;
    kmod.licenseDeclared = "LicenseRef-unknown AND GPL-2.0-or-later";
    const mawkLike = source.packages.find((p) => p.name === "linux-base")!;
    mawkLike.licenseDeclared = "LicenseRef-X11-with-something-special";
    const carried = spdxFlavorPackages(source, "generic")!;
    assert.equal(carried.find((p) => p.name === "kmod")!.license, "NOASSERTION");
    const base = carried.find((p) => p.name === "linux-base")!;
    assert.deepEqual([base.license, base.licenseRefs], ["LicenseRef-X11-with-something-special", { "LicenseRef-X11-with-something-special": "X11-with-something special" }]);
  });
});

test("the vendored CycloneDX schemas are those CycloneDX's library ships (schema/vendor/README.md)", async () => {
  const { readFile } = await import("node:fs/promises");
  const { REPO } = await import("../helpers/kiln.js");
  for (const f of ["bom-1.6.SNAPSHOT.schema.json", "spdx.SNAPSHOT.schema.json", "jsf-0.82.SNAPSHOT.schema.json"]) {
    assert.equal(await readFile(path.join(REPO, "schema/vendor", f), "utf8"), await readFile(path.join(REPO, "node_modules/@cyclonedx/cyclonedx-library/res/schema", f), "utf8"), f);
  }
});

test("purl vendor and distro come from the root's os-release", async () => {
  const { distroOf } = await import("../../src/attest/attest.js");
  const { debPurl } = await import("../../src/attest/debian.js");
  const cases: Array<[string, { vendor?: string; distro?: string }]> = [
    ['PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\nVERSION_CODENAME=bookworm\nID=debian\n', { vendor: "debian", distro: "debian-12" }],
    ['PRETTY_NAME="Debian GNU/Linux trixie/sid"\nVERSION_CODENAME=trixie\nID=debian\n', { vendor: "debian", distro: "debian-trixie" }],
    ['NAME="Ubuntu"\nVERSION_ID="22.04"\nID=ubuntu\nID_LIKE=debian\n', { vendor: "ubuntu", distro: "ubuntu-22.04" }],
  ];
  for (const [text, want] of cases) {
    const r = path.join(dir, `os-${want.distro}`);
    await mkdir(path.join(r, "etc"), { recursive: true });
    await writeFile(path.join(r, "etc/os-release"), text);
    assert.deepEqual(await distroOf(r), want);
  }
  assert.deepEqual(await distroOf(path.join(dir, "no-root")), {});
  assert.equal(debPurl({ name: "bash", version: "5.1-6ubuntu1", arch: "amd64" }, { vendor: "ubuntu", distro: "ubuntu-22.04" }), "pkg:deb/ubuntu/bash@5.1-6ubuntu1?arch=amd64&distro=ubuntu-22.04");
});

test("a root whose dpkg status, os-release and apt cache are links to host paths gives nothing of the host", async () => {
  const { distroOf } = await import("../../src/attest/attest.js");
  // Host files an image's absolute links name: followed on the host they would be read.
  const host = path.join(dir, "host");
  await mkdir(path.join(host, "archives"), { recursive: true });
  await writeFile(path.join(host, "status"), pkg("host-secret", "1.0", "amd64"));
  await writeFile(path.join(host, "os-release"), "ID=hostos\nVERSION_ID=99\n");
  await writeFile(path.join(host, "archives", "bash_5.2.15-2+b7_amd64.deb"), "host bytes");
  const evil = path.join(dir, "evil");
  await mkdir(path.join(evil, "var/lib/dpkg"), { recursive: true });
  await mkdir(path.join(evil, "etc"), { recursive: true });
  await mkdir(path.join(evil, "var/cache/apt"), { recursive: true });
  await symlink(path.join(host, "status"), path.join(evil, "var/lib/dpkg/status"));
  await symlink(path.join(host, "os-release"), path.join(evil, "etc/os-release"));
  assert.deepEqual(await readRootPackages(evil, { debDirs: [] }), [], "the host's status file is not read");
  assert.deepEqual(await distroOf(evil), {}, "nor its os-release");
  // A real status, but the root's apt cache links to a host dir holding a .deb of that name.
  await rm(path.join(evil, "var/lib/dpkg/status"));
  await writeFile(path.join(evil, "var/lib/dpkg/status"), pkg("bash", "5.2.15-2+b7", "amd64"));
  await symlink(path.join(host, "archives"), path.join(evil, "var/cache/apt/archives"));
  const [bash] = await readRootPackages(evil, { debDirs: [] });
  assert.equal(bash!.name, "bash");
  assert.equal(bash!.debSha256, undefined, "the host's .deb is not hashed as the image's");
});

test(".deb digests are kept by inode, size and mtime: a replaced .deb is hashed again", async () => {
  const { DebDigestCache } = await import("../../src/attest/debian.js");
  const { utimes } = await import("node:fs/promises");
  const p = path.join(dir, "digest-pool");
  const r = path.join(dir, "digest-root");
  await mkdir(p, { recursive: true });
  await mkdir(path.join(r, "var/lib/dpkg"), { recursive: true });
  await writeFile(path.join(r, "var/lib/dpkg/status"), pkg("bash", "5.2.15-2+b7", "amd64"));
  const deb = path.join(p, "bash_5.2.15-2+b7_amd64.deb");
  await writeFile(deb, "first");
  const file = path.join(dir, "deb-sha256.json");
  const sha = (s: string) => createHash("sha256").update(s).digest("hex");
  let cache = await DebDigestCache.open(file);
  assert.equal((await readRootPackages(r, { debDirs: [p], digests: cache }))[0]!.debSha256, sha("first"));
  await cache.save();
  // A kept digest is used as long as the file is the same file: shown by a stale entry for it.
  const { readFile: rf } = await import("node:fs/promises");
  const saved = JSON.parse(await rf(file, "utf8")) as Record<string, { id: string; sha256: string }>;
  saved[deb]!.sha256 = "9".repeat(64);
  await writeFile(file, JSON.stringify(saved));
  cache = await DebDigestCache.open(file);
  assert.equal((await readRootPackages(r, { debDirs: [p], digests: cache }))[0]!.debSha256, "9".repeat(64), "not hashed again");
  // Replaced (new inode, size, mtime): hashed again.
  await rm(deb);
  await writeFile(deb, "second!");
  await utimes(deb, new Date(1e9), new Date(1e9));
  assert.equal((await readRootPackages(r, { debDirs: [p], digests: cache }))[0]!.debSha256, sha("second!"));
});
