// Streams, for real (root): `kiln streams sync` builds a minbase image with two flavors (generic,
// cloud) from a recipe whose extra repository is a signed apt repository this test makes and
// serves on loopback; the stream is signed, carries the bootloader products from Debian's
// packages, and passes `kiln streams check` with the exported keyring, from disk and over HTTP.
// Then: the same out dir published again is a second version; a sync with nothing new does
// nothing; a newer package in the repository makes sync rebuild from the stage after the
// bootstrap and publish a third version, with retention keeping 2 and the dropped files waiting
// out their grace period; a corrupted file and a corrupted signature fail the check. Each version
// carries the build's SBOMs, provenance and SHA256SUMS as extra items, which the check accepts.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdir, readFile, rm, writeFile, stat } from "node:fs/promises";
import path from "node:path";
import type { BuildResult } from "../../src/artifacts/result.js";
import { sha256Hex } from "../../src/cache/key.js";
import { streamTimestamp, type ProductsFile } from "../../src/streams/format.js";
import { serveDirectory, type DirectoryServer } from "../../src/verify/http-server.js";
import { loopsUnder, mountsUnder, processesUnder } from "../helpers/host.js";
import { runKiln, scratch } from "../helpers/kiln.js";
import { throwawayKey } from "../helpers/streams.js";

const today = () => new Date().toISOString().slice(0, 10).replaceAll("-", "");
const exists = async (p: string) => (await stat(p).catch(() => undefined)) !== undefined;

describe("kiln streams, for real", () => {
  let s: Awaited<ReturnType<typeof scratch>>;
  let repo: DirectoryServer;
  let gnupg: string;
  const stream = () => s.out("stream");
  const keyring = () => s.out("stream-key.gpg");
  const products = async () => JSON.parse(await readFile(path.join(stream(), "streams/v1/org.kiln:candidate:v3:download.json"), "utf8")) as ProductsFile;
  const GENERIC = "org.kiln.candidate:v3:boot:bookworm:amd64:generic";
  const CLOUD = "org.kiln.candidate:v3:boot:bookworm:amd64:generic-cloud";

  /** Builds kiln-probe VERSION into the repository and re-signs its index. */
  async function publishProbe(version: string): Promise<void> {
    const root = s.out(`pkg-${version}`);
    await mkdir(path.join(root, "DEBIAN"), { recursive: true });
    await mkdir(path.join(root, "usr/share/kiln-probe"), { recursive: true });
    await writeFile(path.join(root, "usr/share/kiln-probe/version"), `${version}\n`);
    await writeFile(path.join(root, "DEBIAN/control"), `Package: kiln-probe\nVersion: ${version}\nArchitecture: all\nMaintainer: Kiln tests <tests@kiln.invalid>\nSection: misc\nPriority: optional\nDescription: probe package for the streams sync test\n`);
    const repoDir = s.out("repo");
    await mkdir(path.join(repoDir, "pool"), { recursive: true });
    execFileSync("dpkg-deb", ["--build", "--root-owner-group", root, path.join(repoDir, `pool/kiln-probe_${version}_all.deb`)], { stdio: "ignore" });
    const packages = execFileSync("dpkg-scanpackages", ["--multiversion", "pool", "/dev/null"], { cwd: repoDir, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
    const dists = path.join(repoDir, "dists/kiln");
    await mkdir(path.join(dists, "main/binary-amd64"), { recursive: true });
    await writeFile(path.join(dists, "main/binary-amd64/Packages"), packages);
    await writeFile(
      path.join(dists, "Release"),
      `Origin: kiln-test\nLabel: kiln-test\nSuite: kiln\nCodename: kiln\nDate: ${streamTimestamp(new Date())}\nArchitectures: amd64 all\nComponents: main\nSHA256:\n ${sha256Hex(packages)} ${Buffer.byteLength(packages)} main/binary-amd64/Packages\n`,
    );
    execFileSync("gpg", ["--homedir", gnupg, "--batch", "--yes", "--clearsign", "-o", path.join(dists, "InRelease"), path.join(dists, "Release")], { stdio: "ignore" });
  }

  before(async () => {
    s = await scratch("kiln-streams-", { sharedLayers: true });
    // The repository's key, in a GnuPG home of its own.
    gnupg = s.out("gnupg");
    await mkdir(gnupg, { mode: 0o700 });
    execFileSync("gpg", ["--homedir", gnupg, "--batch", "--passphrase", "", "--quick-gen-key", "Kiln test repository <repo@kiln.invalid>", "ed25519", "sign", "never"], { stdio: "ignore" });
    await writeFile(s.out("repo-key.asc"), execFileSync("gpg", ["--homedir", gnupg, "--batch", "--armor", "--export"]));
    await publishProbe("1.0");
    repo = await serveDirectory(s.out("repo"));

    await writeFile(s.out("recipe.yaml"), `apiVersion: kiln/v1
name: streams-test
base: { debian: bookworm, variant: minbase }
repositories:
  - { name: probe, uri: "${repo.url("/")}", suite: kiln, components: [main], key: ./repo-key.asc }
packages: [systemd, systemd-sysv, udev, kiln-probe]
kernels:
  - { flavor: generic, package: linux-image-amd64 }
  - { flavor: cloud, package: linux-image-cloud-amd64 }
`);
    const key = await throwawayKey(s.dir, "Kiln Test Stream");
    await writeFile(s.out("sync.yaml"), `stream: ./stream
label: candidate
keep: 2
grace: 3d
signKey: ${key.secret}
verify: false
bootloaders: true
outDir: ./builds
images:
  - { recipe: ./recipe.yaml, release: bookworm, flavors: [generic, cloud] }
`);
    const r = await runKiln(["streams", "export-key", key.secret, "--out", keyring()]);
    assert.equal(r.code, 0, r.stderr);
  });

  after(async () => {
    await repo?.close();
    execFileSync("gpgconf", ["--homedir", gnupg, "--kill", "all"], { stdio: "ignore" });
    assert.deepEqual(await mountsUnder(s.dir), [], "no mounts left");
    assert.deepEqual(loopsUnder(s.dir), [], "no loop devices left");
    assert.deepEqual(processesUnder(s.dir), [], "no processes left");
    assert.deepEqual(orphanedSigningAgents(), [], "no signing agent left");
    await rm(s.dir, { recursive: true, force: true });
  });

  test("sync builds what the stream lacks and publishes a signed stream that passes the check", async () => {
    const t0 = Date.now();
    const r = await runKiln(["streams", "sync", s.out("sync.yaml"), "--cache-dir", s.cache]);
    assert.equal(r.code, 0, r.stderr + r.stdout.slice(-3000));
    assert.match(r.stdout, /streams-test \(bookworm\/amd64: generic, cloud\): new version due: not in the stream yet/);
    assert.match(r.stdout, /synced: 1 built and published, 0 up to date, bootloaders updated/);
    console.log(`# first sync (full build + publish + bootloaders): ${((Date.now() - t0) / 1000).toFixed(1)} s`);

    const p = await products();
    assert.deepEqual(Object.keys(p.products).sort(), [GENERIC, CLOUD]);
    assert.deepEqual(Object.keys(p.products[CLOUD]!.versions), [today()]);
    const items = p.products[CLOUD]!.versions[today()]!.items;
    assert.equal(items["boot-kernel"]!.kpackage, "linux-image-cloud-amd64");
    const manifest = await readFile(path.join(stream(), items.manifest!.path), "utf8");
    assert.match(manifest, /^kiln-probe\t1\.0$/m);
    // The build's attestations are extra items of every version (the check below hashes them and applies MAAS' rules).
    for (const ftype of ["sbom.spdx.json", "sbom.cdx.json", "provenance.json", "sha256sums"]) assert.equal(items[ftype]?.ftype, ftype, `${ftype} is an item`);
    const spdx = JSON.parse(await readFile(path.join(stream(), items["sbom.spdx.json"]!.path), "utf8")) as { packages: Array<{ name: string; versionInfo?: string }> };
    assert.ok(spdx.packages.some((p) => p.name === "kiln-probe" && p.versionInfo === "1.0"), "the published SBOM lists the repository's package");

    const boot = JSON.parse(await readFile(path.join(stream(), "streams/v1/org.kiln:candidate:1:bootloader-download.json"), "utf8")) as ProductsFile;
    assert.deepEqual(Object.keys(boot.products).sort(), ["org.kiln.candidate:1:grub-efi-signed:uefi:amd64", "org.kiln.candidate:1:pxelinux:pxe:i386"]);
    const uefi = Object.values(boot.products["org.kiln.candidate:1:grub-efi-signed:uefi:amd64"]!.versions)[0]!.items;
    assert.deepEqual(Object.keys(uefi).sort(), ["grub2-signed", "shim-signed"]);
    const tar = execFileSync("tar", ["-tJf", path.join(stream(), uefi["shim-signed"]!.path)], { encoding: "utf8" });
    assert.equal(tar, "bootx64.efi\n");
    assert.equal(execFileSync("tar", ["-tJf", path.join(stream(), uefi["grub2-signed"]!.path)], { encoding: "utf8" }), "grubx64.efi\n");
    const pxe = Object.values(boot.products["org.kiln.candidate:1:pxelinux:pxe:i386"]!.versions)[0]!.items;
    const syslinux = execFileSync("tar", ["-tJf", path.join(stream(), pxe.syslinux!.path)], { encoding: "utf8" }).split("\n");
    for (const f of ["pxelinux.0", "lpxelinux.0", "ldlinux.c32", "libcom32.c32", "chain.c32"]) assert.ok(syslinux.includes(f), f);

    const t1 = Date.now();
    const c = await runKiln(["streams", "check", stream(), "--keyring", keyring()]);
    assert.equal(c.code, 0, c.stdout + c.stderr);
    assert.match(c.stdout, /^ok: 4 products, 4 versions, \d+ files .* hashed, 6 signatures/m);
    console.log(`# check (with signatures): ${((Date.now() - t1) / 1000).toFixed(1)} s: ${c.stdout.trim()}`);
  });

  test("the same out dir published again is a second version of both flavors; checked over HTTP too", async () => {
    const t0 = Date.now();
    const r = await runKiln(["streams", "publish", s.out("builds/streams-test"), "--to", stream(), "--sign-key", s.out("kiln-test-stream.asc"), "--keep", "2"]);
    assert.equal(r.code, 0, r.stderr);
    console.log(`# publish: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    assert.match(r.stdout, new RegExp(`published bookworm/amd64 ${today()}\\.1 from .*: ${GENERIC.replaceAll(".", "\\.")}, ${CLOUD.replaceAll(".", "\\.")}`));
    const p = await products();
    for (const name of [GENERIC, CLOUD]) assert.deepEqual(Object.keys(p.products[name]!.versions).sort(), [today(), `${today()}.1`]);

    const server = await serveDirectory(stream());
    try {
      const c = await runKiln(["streams", "check", server.url("/streams/v1/index.sjson"), "--keyring", keyring()]);
      assert.equal(c.code, 0, c.stdout + c.stderr);
      assert.match(c.stdout, /^ok: 4 products, 6 versions/m);
    } finally {
      await server.close();
    }
  });

  test("a sync with nothing new does nothing and says so", async () => {
    const before = await readFile(path.join(stream(), "streams/v1/index.sjson"), "utf8");
    const r = await runKiln(["streams", "sync", s.out("sync.yaml"), "--cache-dir", s.cache]);
    assert.equal(r.code, 0, r.stderr + r.stdout.slice(-3000));
    assert.match(r.stdout, new RegExp(`streams-test \\(bookworm/amd64: generic, cloud\\): up to date: ${today()}\\.1: recipe unchanged, \\d+ packages and 2 kernels current`));
    assert.match(r.stdout, /^nothing to do: 1 image up to date, bootloaders current$/m);
    assert.doesNotMatch(r.stdout, /building/);
    assert.equal(await readFile(path.join(stream(), "streams/v1/index.sjson"), "utf8"), before, "the stream is untouched");
  });

  test("a newer package in the recipe's repository: sync rebuilds from after the bootstrap, publishes, keeps 2", async () => {
    await publishProbe("1.1");
    const t0 = Date.now();
    const r = await runKiln(["streams", "sync", s.out("sync.yaml"), "--cache-dir", s.cache]);
    assert.equal(r.code, 0, r.stderr + r.stdout.slice(-3000));
    console.log(`# sync with a newer package (rebuild from repositories on): ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    assert.match(r.stdout, /new version due: newer packages: kiln-probe 1\.0 → 1\.1/);
    assert.match(r.stdout, /streams-test: building from repositories into /);
    assert.match(r.stdout, /synced: 1 built and published/);
    const result = JSON.parse(await readFile(s.out("builds/streams-test/result.json"), "utf8")) as BuildResult;
    const cached = Object.fromEntries(result.stages.map((x) => [x.name, x.cached]));
    assert.equal(cached.bootstrap, true, "the bootstrap layer is reused");
    assert.equal(cached.packages, false);

    const p = await products();
    const v3 = `${today()}.2`;
    for (const name of [GENERIC, CLOUD]) assert.deepEqual(Object.keys(p.products[name]!.versions).sort(), [`${today()}.1`, v3], "keep 2");
    const manifest = await readFile(path.join(stream(), p.products[GENERIC]!.versions[v3]!.items.manifest!.path), "utf8");
    assert.match(manifest, /^kiln-probe\t1\.1$/m);
    assert.ok(await exists(path.join(stream(), `bookworm/amd64/${today()}/squashfs`)), "the dropped version's files wait out the grace period");
    assert.match(r.stdout, /unreferenced files kept for the grace period/);

    const c = await runKiln(["streams", "check", stream(), "--keyring", keyring()]);
    assert.equal(c.code, 0, c.stdout + c.stderr);
  });

  test("a corrupted file and a corrupted signature fail the check", async () => {
    const p = await products();
    const initrd = path.join(stream(), p.products[CLOUD]!.versions[`${today()}.2`]!.items["boot-initrd"]!.path);
    await writeFile(initrd, "not an initrd\n");
    const sjson = path.join(stream(), "streams/v1/org.kiln:candidate:v3:download.sjson");
    const text = await readFile(sjson, "utf8");
    // Flip one character inside the signature block.
    const at = text.indexOf("-----BEGIN PGP SIGNATURE-----") + 40;
    await writeFile(sjson, text.slice(0, at) + (text[at] === "A" ? "B" : "A") + text.slice(at + 1));
    const c = await runKiln(["streams", "check", stream(), "--keyring", keyring()]);
    assert.equal(c.code, 1, c.stdout + c.stderr);
    assert.match(c.stdout, /download\.sjson: signature does not verify with the keyring/);
    assert.match(c.stdout, new RegExp(`boot-initrd: sha256 is [0-9a-f]{64}, the stream says`));
    assert.match(c.stdout, /^\d+ violations: /m);
  });
});

/**
 * Kiln signing agents whose owner (the `kiln-owner` pid in their GnuPG home) is gone: a leak. An
 * agent of a live owner belongs to a command still running, e.g. in the other test lane.
 */
function orphanedSigningAgents(): string[] {
  const lines = execFileSync("sh", ["-c", "pgrep -fa 'gpg-agent --homedi[r] /tmp/kiln-gpg' || true"], { encoding: "utf8" }).split("\n").filter(Boolean);
  return lines.filter((l) => {
    const home = /--homedir (\S+)/.exec(l)?.[1];
    let owner = NaN;
    try {
      owner = Number(readFileSync(path.join(home ?? "/nonexistent", "kiln-owner"), "utf8").trim());
    } catch {
      // no owner file: nobody will ever stop it
    }
    if (!Number.isInteger(owner) || owner <= 0) return true;
    try {
      process.kill(owner, 0);
      return false;
    } catch {
      return true;
    }
  });
}
