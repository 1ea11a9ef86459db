// Attestations on a real build, for real (root): a minbase image with one flavor, built on the
// layers other suites share (sharedLayers), signed with a throwaway key. gpgv and sha256sum -c
// accept the untouched out dir, so does `kiln attest verify`; one changed byte in the squashfs,
// in provenance.json or in SHA256SUMS makes it fail naming that file. The SBOMs pass the official
// schemas and CycloneDX's library and describe the real packages and .debs.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { open, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import type { BuildResult, ImsManifest } from "../../src/artifacts/result.js";
import { fileDigest } from "../../src/cache/key.js";
import type { ProvenanceStatement } from "../../src/attest/provenance.js";
import type { CdxBom } from "../../src/attest/sbom-cyclonedx.js";
import type { SpdxDocument } from "../../src/attest/sbom-spdx.js";
import { openSigner } from "../../src/streams/sign.js";
import { mountsUnder, processesUnder } from "../helpers/host.js";
import { runKiln, scratch } from "../helpers/kiln.js";
import { cycloneDxLibraryErrors, cycloneDxSchemaErrors, spdxSchemaErrors } from "../helpers/sbom-schemas.js";
import { throwawayKey } from "../helpers/streams.js";

// The same root and kernel as the other suites' minbase images: every stage is usually cached.
const RECIPE = `apiVersion: kiln/v1
name: attest-test
base: { debian: bookworm, variant: minbase }
packages: [systemd, systemd-sysv, udev]
kernels:
  - flavor: generic
    package: linux-image-amd64
outputs: [squashfs, manifest, kernel, initrd]
verify: none
`;

let s: Awaited<ReturnType<typeof scratch>>;
let keyring: string;
let result: BuildResult;
const out = () => s.out("out");
const json = async <T>(rel: string) => JSON.parse(await readFile(path.join(out(), rel), "utf8")) as T;

/** Flips one byte of a file, runs fn, flips it back. */
async function withFlippedByte(rel: string, offset: number, fn: () => Promise<void>): Promise<void> {
  const flip = async () => {
    const fh = await open(path.join(out(), rel), "r+");
    try {
      const b = Buffer.alloc(1);
      await fh.read(b, 0, 1, offset);
      b[0] = b[0]! ^ 0x01;
      await fh.write(b, 0, 1, offset);
    } finally {
      await fh.close();
    }
  };
  await flip();
  try {
    await fn();
  } finally {
    await flip();
  }
}

before(async () => {
  s = await scratch("kiln-attest-", { sharedLayers: true });
  await writeFile(s.out("recipe.yaml"), RECIPE);
  const key = await throwawayKey(s.dir, "Kiln Attest Test");
  keyring = s.out("attest-key.gpg");
  const signer = await openSigner(key.secret);
  await signer.exportPublicKey(keyring);
  await signer.close();
  const r = await runKiln(["build", s.out("recipe.yaml"), "--cache-dir", s.cache, "--out", out(), "--sign-key", key.secret, "--no-verify", "--json"]);
  assert.equal(r.code, 0, r.stderr + r.stdout.slice(-3000));
  result = await json<BuildResult>("result.json");
});

after(async () => {
  assert.deepEqual(await mountsUnder(s.dir), [], "no mounts left");
  assert.deepEqual(processesUnder(s.dir), [], "no processes left");
  await rm(s.dir, { recursive: true, force: true });
});

describe("kiln build --sign-key", () => {
  test("writes the SBOMs, provenance, SHA256SUMS and SHA256SUMS.gpg as artifacts, SBOMs in the IMS manifest", async () => {
    const byName = Object.fromEntries(result.artifacts.map((a) => [a.name, a]));
    assert.deepEqual(
      ["sbom.spdx.json", "sbom.cdx.json", "provenance.json", "SHA256SUMS", "SHA256SUMS.gpg"].map((n) => [byName[n]?.path, byName[n]?.type]),
      [
        ["sbom.spdx.json", "application/spdx+json"],
        ["sbom.cdx.json", "application/vnd.cyclonedx+json"],
        ["provenance.json", "application/vnd.in-toto+json"],
        ["SHA256SUMS", "text/plain"],
        ["SHA256SUMS.gpg", "application/pgp-signature"],
      ],
    );
    for (const a of result.artifacts) assert.equal(await fileDigest(path.join(out(), a.path)), a.sha256, a.path);
    const ims = await json<ImsManifest>("manifest.json");
    assert.ok(ims.artifacts.some((a) => a.type === "application/spdx+json" && a.link.path === "sbom.spdx.json" && a.md5 === byName["sbom.spdx.json"]!.md5));
    assert.ok(ims.artifacts.some((a) => a.type === "application/vnd.cyclonedx+json" && a.link.path === "sbom.cdx.json"));
    const sums = await readFile(path.join(out(), "SHA256SUMS"), "utf8");
    const listed = sums.trim().split("\n").map((l) => l.split("  ")[1]);
    assert.deepEqual(listed, result.artifacts.map((a) => a.path).filter((p) => !p.startsWith("SHA256SUMS")).sort(), "every artifact but the sums themselves");
  });

  test("gpgv and sha256sum -c accept the untouched out dir, and so does kiln attest verify", async () => {
    const gpgv = spawnSync("gpgv", ["--keyring", keyring, "SHA256SUMS.gpg", "SHA256SUMS"], { cwd: out(), encoding: "utf8" });
    assert.equal(gpgv.status, 0, gpgv.stderr);
    assert.match(gpgv.stderr, /Good signature from "Kiln Attest Test/);
    const sums = spawnSync("sha256sum", ["-c", "--strict", "SHA256SUMS"], { cwd: out(), encoding: "utf8" });
    assert.equal(sums.status, 0, sums.stdout + sums.stderr);
    assert.match(sums.stdout, /^squashfs: OK$/m);
    assert.match(sums.stdout, /^provenance\.json: OK$/m);
    const v = await runKiln(["attest", "verify", out(), "--keyring", keyring]);
    assert.equal(v.code, 0, v.stdout + v.stderr);
    assert.match(v.stdout, /ok \(\d+ checks, signature good\)/);
  });

  test("one changed byte in the squashfs fails kiln attest verify, naming the squashfs", async () => {
    await withFlippedByte("squashfs", 4096, async () => {
      const v = await runKiln(["attest", "verify", out(), "--keyring", keyring]);
      assert.equal(v.code, 1, v.stdout + v.stderr);
      assert.match(v.stdout, /^FAIL squashfs: checksum mismatch: SHA256SUMS says [0-9a-f]{64}, the file has [0-9a-f]{64}$/m);
      assert.doesNotMatch(v.stdout, /FAIL (SHA256SUMS|provenance\.json|generic)/, "only the squashfs is named");
      assert.notEqual(spawnSync("sha256sum", ["-c", "--quiet", "SHA256SUMS"], { cwd: out() }).status, 0, "sha256sum -c fails too");
    });
  });

  test("one changed byte in provenance.json fails, naming provenance.json", async () => {
    const text = await readFile(path.join(out(), "provenance.json"), "utf8");
    await withFlippedByte("provenance.json", text.indexOf("attest-test"), async () => {
      const v = await runKiln(["attest", "verify", out(), "--keyring", keyring]);
      assert.equal(v.code, 1, v.stdout + v.stderr);
      assert.match(v.stdout, /^FAIL provenance\.json: checksum mismatch/m);
    });
  });

  test("one changed byte in SHA256SUMS fails the signature, naming SHA256SUMS; gpgv refuses it too", async () => {
    await withFlippedByte("SHA256SUMS", 0, async () => {
      const v = await runKiln(["attest", "verify", out(), "--keyring", keyring]);
      assert.equal(v.code, 1, v.stdout + v.stderr);
      assert.match(v.stdout, /^FAIL SHA256SUMS: the signature SHA256SUMS\.gpg does not verify/m);
      assert.notEqual(spawnSync("gpgv", ["--keyring", keyring, "SHA256SUMS.gpg", "SHA256SUMS"], { cwd: out() }).status, 0);
    });
    const v = await runKiln(["attest", "verify", out(), "--keyring", keyring]);
    assert.equal(v.code, 0, "restored: " + v.stdout);
  });

  test("a --sign-key gpg cannot sign with fails before anything is built, with exit 2 naming the key", async () => {
    const home = s.out("empty-gnupg");
    execFileSync("mkdir", ["-m", "700", home]);
    const r = await runKiln(["build", s.out("recipe.yaml"), "--cache-dir", s.cache, "--out", s.out("out-badkey"), "--sign-key", "nobody@kiln.invalid", "--json"], { env: { GNUPGHOME: home } });
    assert.equal(r.code, 2, r.stdout + r.stderr);
    assert.match(r.stderr, /--sign-key nobody@kiln\.invalid: no secret key by that name/);
    assert.doesNotMatch(r.stdout, /"type":"plan"/, "nothing was planned or built");
  });

  test("kiln attest verify: exit 2 for a dir that is no out dir, with the reason", async () => {
    const v = await runKiln(["attest", "verify", s.out("no-such-out")]);
    assert.equal(v.code, 2, v.stdout + v.stderr);
    assert.match(v.stderr, /no-such-out: not a Kiln out dir \(no result\.json: ENOENT\)/);
  });
});

describe("the SBOMs of the real build", () => {
  test("are valid SPDX 2.3 and CycloneDX 1.6 (official schemas, CycloneDX's library)", async () => {
    assert.deepEqual(spdxSchemaErrors(await json("sbom.spdx.json")), []);
    assert.deepEqual(cycloneDxSchemaErrors(await json("sbom.cdx.json")), []);
    assert.equal(await cycloneDxLibraryErrors(await readFile(path.join(out(), "sbom.cdx.json"), "utf8")), null);
  });

  test("name every installed package with purl and license, the .deb's real sha256, and the flavor's kernel", async () => {
    const spdx = await json<SpdxDocument>("sbom.spdx.json");
    const manifest = (await readFile(path.join(out(), "squashfs.manifest"), "utf8")).trim().split("\n");
    const debs = spdx.packages.filter((p) => p.primaryPackagePurpose === "INSTALL");
    const rootIds = new Set(spdx.relationships.filter((r) => r.spdxElementId === "SPDXRef-Image" && r.relationshipType === "CONTAINS").map((r) => r.relatedSpdxElement));
    assert.equal(debs.filter((p) => rootIds.has(p.SPDXID)).length, manifest.length, "one root package per squashfs.manifest line");
    const systemd = debs.find((p) => p.name === "systemd")!;
    const version = manifest.find((l) => l.startsWith("systemd\t"))!.split("\t")[1]!;
    assert.equal(systemd.versionInfo, version);
    assert.equal(systemd.externalRefs![0]!.referenceLocator, `pkg:deb/debian/systemd@${version}?arch=amd64&distro=debian-12`);
    assert.match(systemd.licenseDeclared, /LGPL-2\.1-or-later/, "systemd's copyright file is machine-readable");
    const deb = path.join(s.cache, "apt/archives", `systemd_${version.replaceAll(":", "%3a")}_amd64.deb`);
    assert.equal(systemd.checksums?.[0]?.checksumValue, await fileDigest(deb), "the sha256 of the very .deb apt installed");
    const kernel = result.artifacts.find((a) => a.name === "boot-kernel")!;
    const flavor = spdx.packages.find((p) => p.name === "attest-test flavor generic")!;
    const inFlavor = new Set(spdx.relationships.filter((r) => r.spdxElementId === flavor.SPDXID && r.relationshipType === "CONTAINS").map((r) => r.relatedSpdxElement));
    assert.ok(debs.some((p) => inFlavor.has(p.SPDXID) && p.name === `linux-image-${kernel.kernelVersion!}`), "the flavor adds its kernel package");
    assert.ok(spdx.packages.some((p) => inFlavor.has(p.SPDXID) && p.checksums?.some((c) => c.checksumValue === kernel.sha256)), "and holds its boot-kernel artifact");
    const cdx = await json<CdxBom>("sbom.cdx.json");
    assert.ok(cdx.components.some((c) => c.purl === systemd.externalRefs![0]!.referenceLocator && c.hashes?.[0]?.content === systemd.checksums![0]!.checksumValue));
  });

  test("provenance names the recipe, its stage keys and the artifacts", async () => {
    const st = await json<ProvenanceStatement>("provenance.json");
    assert.equal(st.predicate.buildDefinition.externalParameters.recipe!.digest.sha256, result.recipe.sha256);
    assert.equal(st.predicate.buildDefinition.externalParameters.recipe!.digest.sha256, await fileDigest(s.out("recipe.yaml")));
    assert.deepEqual(st.predicate.buildDefinition.internalParameters.stages, result.stages.map((x) => ({ name: x.name, key: x.key })));
    const subjects = Object.fromEntries(st.subject.map((x) => [x.name, x.digest.sha256]));
    for (const a of result.artifacts.filter((x) => !["provenance.json", "SHA256SUMS", "SHA256SUMS.gpg"].includes(x.name))) assert.equal(subjects[a.path], a.sha256, a.path);
    assert.ok(Date.parse(st.predicate.runDetails.metadata.startedOn) <= Date.parse(st.predicate.runDetails.metadata.finishedOn));
  });

  test("without --sign-key: SHA256SUMS but no signature; verify passes unless a keyring is asked for", async () => {
    const unsigned = s.out("out-unsigned");
    const r = await runKiln(["build", s.out("recipe.yaml"), "--cache-dir", s.cache, "--out", unsigned, "--json"]);
    assert.equal(r.code, 0, r.stderr + r.stdout.slice(-3000));
    assert.equal(spawnSync("sha256sum", ["-c", "--quiet", "SHA256SUMS"], { cwd: unsigned }).status, 0);
    assert.equal(spawnSync("test", ["-e", path.join(unsigned, "SHA256SUMS.gpg")]).status, 1);
    const plain = await runKiln(["attest", "verify", unsigned]);
    assert.equal(plain.code, 0, plain.stdout);
    assert.match(plain.stdout, /not signed/);
    const asked = await runKiln(["attest", "verify", unsigned, "--keyring", keyring]);
    assert.equal(asked.code, 1);
    assert.match(asked.stdout, /^FAIL SHA256SUMS\.gpg: missing: SHA256SUMS is not signed/m);
    // An unchanged rebuild: the SBOMs of the same layers and artifacts are not made again, and are the same bytes.
    assert.match(await readFile(path.join(unsigned, "logs/attest.log"), "utf8"), /SBOMs of the same layers and artifacts made before/);
    assert.equal(execFileSync("cmp", [path.join(unsigned, "sbom.spdx.json"), path.join(out(), "sbom.spdx.json")]).length, 0);
    assert.equal(execFileSync("cmp", [path.join(unsigned, "sbom.cdx.json"), path.join(out(), "sbom.cdx.json")]).length, 0);
  });
});
