/** Fixtures for stream tests: fake build out dirs (small files, a real result.json) and a throwaway OpenPGP key. */
import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { imsManifest, type BuildResult, type ResultArtifact } from "../../src/artifacts/result.js";
import { ARTIFACT_KINDS, type ArtifactKind } from "../../src/artifacts/types.js";
import { PROVENANCE_TYPE, STATEMENT_TYPE } from "../../src/attest/provenance.js";
import { formatSums } from "../../src/attest/sums.js";
import { fileDigests } from "../../src/cache/key.js";
import type { Signer } from "../../src/streams/sign.js";

/**
 * Writes an out dir shaped like a real build's: squashfs, squashfs.manifest and per flavor
 * boot-kernel, boot-initrd and boot-params, with result.json describing them. `seed` makes the
 * contents differ between builds.
 */
export async function fakeOut(dir: string, opts: { seed: string; flavors?: string[]; release?: string; manifest?: string; stages?: Record<string, string>; tarball?: boolean }): Promise<BuildResult> {
  const flavors = opts.flavors ?? ["generic", "cloud"];
  await mkdir(dir, { recursive: true });
  const artifacts: ResultArtifact[] = [];
  const put = async (rel: string, content: string, kind: (typeof ARTIFACT_KINDS)[keyof typeof ARTIFACT_KINDS], extra: Partial<ResultArtifact> = {}) => {
    await mkdir(path.dirname(path.join(dir, rel)), { recursive: true });
    await writeFile(path.join(dir, rel), content);
    artifacts.push({ name: kind.name, path: rel, type: kind.type, ftype: kind.ftype, ...extra, ...(await fileDigests(path.join(dir, rel))) });
  };
  await put("squashfs", `squashfs ${opts.seed}\n`.repeat(100), ARTIFACT_KINDS.squashfs);
  await put("squashfs.manifest", opts.manifest ?? `base-files\t12.4+deb12u1\nsystemd\t252.36-1~deb12u1\n`, ARTIFACT_KINDS.manifest);
  if (opts.tarball) await put("rootfs.tar.zst", `tarball ${opts.seed}\n`, ARTIFACT_KINDS.tarball);
  for (const f of flavors) {
    const kpackage = f === "generic" ? "linux-image-amd64" : `linux-image-${f}-amd64`;
    const extra = { flavor: f, kpackage, kernelVersion: `6.1.0-28-${f === "generic" ? "" : f + "-"}amd64` };
    await put(`${f}/boot-kernel`, `kernel ${f} ${opts.seed}\n`, ARTIFACT_KINDS.kernel, extra);
    await put(`${f}/boot-initrd`, `initrd ${f} ${opts.seed}\n`, ARTIFACT_KINDS.initrd, extra);
    await put(`${f}/boot-params`, "root=squash:${squashfs_url} ip=dhcp\n", ARTIFACT_KINDS.bootParams, extra);
  }
  const result: BuildResult = {
    recipe: { name: "bookworm-test", sha256: "0".repeat(64) },
    image: { os: "debian", release: opts.release ?? "bookworm", arch: "amd64" },
    stages: Object.entries(opts.stages ?? { bootstrap: "a".repeat(64), packages: "b".repeat(64) }).map(([name, key]) => ({ name, key, cached: false, seconds: 1 })),
    artifacts,
    verify: [],
    kiln: { version: "test", created: new Date().toISOString(), seconds: 1, unchangedImport: false },
  };
  await writeFile(path.join(dir, "result.json"), JSON.stringify(result, null, 2));
  return result;
}

/**
 * Adds to an out dir of fakeOut what the attest step writes (stand-in SBOMs, a provenance
 * statement naming the result's recipe, SHA256SUMS over every artifact and, with a signer, its
 * signature) and rewrites result.json and manifest.json to list them, as a build's would.
 */
export async function attestFakeOut(out: string, result: BuildResult, signer?: Signer): Promise<BuildResult> {
  const put = async (kind: ArtifactKind, text: string) => {
    await writeFile(path.join(out, kind.name), text);
    result.artifacts.push({ name: kind.name, path: kind.name, type: kind.type, ftype: kind.ftype, ...(await fileDigests(path.join(out, kind.name))) });
  };
  await put(ARTIFACT_KINDS.sbomSpdx, JSON.stringify({ spdxVersion: "SPDX-2.3", name: "stand-in" }) + "\n");
  await put(ARTIFACT_KINDS.sbomCycloneDx, JSON.stringify({ bomFormat: "CycloneDX", specVersion: "1.6" }) + "\n");
  const statement = {
    _type: STATEMENT_TYPE,
    subject: result.artifacts.map((a) => ({ name: a.path, digest: { sha256: a.sha256 } })),
    predicateType: PROVENANCE_TYPE,
    predicate: { buildDefinition: { externalParameters: { recipe: { name: result.recipe.name, file: "recipe.yaml", digest: { sha256: result.recipe.sha256 } } } } },
  };
  await put(ARTIFACT_KINDS.provenance, JSON.stringify(statement, null, 2) + "\n");
  const sums = formatSums(result.artifacts);
  await put(ARTIFACT_KINDS.checksums, sums);
  if (signer) await put(ARTIFACT_KINDS.checksumsSignature, await signer.detachSign(sums));
  await writeFile(path.join(out, "result.json"), JSON.stringify(result, null, 2));
  await writeFile(path.join(out, "manifest.json"), JSON.stringify(imsManifest(result.artifacts, new Date()), null, 4));
  return result;
}

/** A throwaway signing key (ed25519, no passphrase), exported as an armored secret key file. */
export async function throwawayKey(dir: string, name = "Kiln Test Stream"): Promise<{ secret: string; fingerprint: string }> {
  const home = await mkdtemp(path.join(os.tmpdir(), "kiln-testkey-"));
  try {
    execFileSync("gpg", ["--homedir", home, "--batch", "--passphrase", "", "--quick-gen-key", `${name} <stream@kiln.invalid>`, "ed25519", "sign", "never"], { stdio: "ignore" });
    const colons = execFileSync("gpg", ["--homedir", home, "--batch", "--with-colons", "--list-secret-keys"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
    const fingerprint = colons.split("\n").find((l) => l.startsWith("fpr:"))!.split(":")[9]!;
    const secret = path.join(dir, `${name.replace(/\W+/g, "-").toLowerCase()}.asc`);
    await writeFile(secret, execFileSync("gpg", ["--homedir", home, "--batch", "--armor", "--export-secret-keys", fingerprint]));
    return { secret, fingerprint };
  } finally {
    execFileSync("gpgconf", ["--homedir", home, "--kill", "all"], { stdio: "ignore" });
    await rm(home, { recursive: true, force: true });
  }
}
