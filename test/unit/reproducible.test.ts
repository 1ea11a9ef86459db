// The pure pieces of reproducible builds (docs/reproducible.md): the epoch from a Release file or
// an imported tree, identifiers derived from a stage key and the epoch, file times clamped, the
// build-time state removed, the epoch in the keys, and the dates handed to sfdisk and xorriso.
import { test } from "node:test";
import assert from "node:assert/strict";
import { lstat, mkdir, mkdtemp, readFile, rm, stat, symlink, utimes, writeFile, chmod } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { parseDeb822Sources } from "../../src/host/apt-sources.js";
import { TOOL_PACKAGES, type ToolVersions } from "../../src/host/tools.js";
import { planBuild, type PlanInputs } from "../../src/plan/plan.js";
import { parseRecipe, type LoadedRecipe } from "../../src/recipe/load.js";
import { KilnError } from "../../src/errors.js";
import { planDiskLayout, sfdiskScript, MIB } from "../../src/stages/disk/layout.js";
import { newestMtime } from "../../src/stages/import.js";
import { isoDate } from "../../src/stages/live/iso-image.js";
import { clampTimes, derivedHex, derivedUuid, releaseEpoch, removeBuildState } from "../../src/stages/reproducible.js";

const INRELEASE = `-----BEGIN PGP SIGNED MESSAGE-----
Hash: SHA256

Origin: Debian
Label: Debian
Suite: stable
Version: 12.11
Codename: bookworm
Changelogs: https://metadata.ftp-master.debian.org/changelogs/@CHANGEPATH@_changelog
Date: Sat, 17 May 2025 09:08:23 UTC
Acquire-By-Hash: yes
No-Support-for-Architecture-all: Packages
Architectures: all amd64 arm64
Components: main contrib non-free-firmware non-free
Description: Debian 12.11 Released 17 May 2025
MD5Sum:
 0ed6d4c8891eb86358b94bb35d9e4da4  1484322 contrib/Contents-all
-----BEGIN PGP SIGNATURE-----

iQIzBAEBCAAdFiEE...
-----END PGP SIGNATURE-----
`;

test("releaseEpoch: the Date of a clear-signed InRelease, in seconds; none without a Date", () => {
  assert.equal(releaseEpoch(INRELEASE), Date.UTC(2025, 4, 17, 9, 8, 23) / 1000);
  assert.equal(releaseEpoch(INRELEASE.replace(/^Date:.*$/m, "")), undefined);
  assert.equal(releaseEpoch("Date: not a date\n"), undefined);
  // Valid-Until is another field: not taken for the Date
  assert.equal(releaseEpoch("Valid-Until: Sat, 24 May 2025 09:08:23 UTC\n"), undefined);
});

test("derivedUuid: the same key, epoch and purpose give the same UUID; each of them changes it; version 8, RFC variant", () => {
  const seed = { key: "a".repeat(64), epoch: 1747472903 };
  const u = derivedUuid(seed, "root");
  assert.equal(derivedUuid({ ...seed }, "root"), u);
  assert.match(u, /^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  const others = [derivedUuid(seed, "esp"), derivedUuid({ ...seed, key: "b".repeat(64) }, "root"), derivedUuid({ ...seed, epoch: seed.epoch + 1 }, "root")];
  for (const o of others) assert.notEqual(o, u);
  assert.equal(new Set(others).size, 3);
});

test("derivedUuid/derivedHex without a seed (a customize job) are random, version 4", () => {
  const a = derivedUuid(undefined, "root");
  assert.match(a, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.notEqual(derivedUuid(undefined, "root"), a);
  assert.notEqual(derivedHex(undefined, "esp", 4), derivedHex(undefined, "esp", 4));
});

test("derivedHex: a FAT volume id is 8 upper-case hex digits, the same for the same seed", () => {
  const seed = { key: "k", epoch: 1 };
  assert.match(derivedHex(seed, "esp", 4), /^[0-9A-F]{8}$/);
  assert.equal(derivedHex(seed, "esp", 4), derivedHex(seed, "esp", 4));
  assert.notEqual(derivedHex(seed, "esp", 4), derivedHex(seed, "efi-image", 4));
});

async function tempDir(): Promise<string> {
  return mkdtemp(path.join(os.tmpdir(), "kiln-repro-"));
}

test("clampTimes: what is newer than the epoch states the epoch; older times stay; a symlink's target is not touched", async () => {
  const dir = await tempDir();
  try {
    const epoch = 1_700_000_000;
    await mkdir(path.join(dir, "d"));
    await writeFile(path.join(dir, "d/new"), "x");
    await writeFile(path.join(dir, "old"), "y");
    await utimes(path.join(dir, "old"), 1_600_000_000, 1_600_000_000);
    const outside = path.join(dir, "..", `${path.basename(dir)}-target`);
    await writeFile(outside, "t");
    await symlink(outside, path.join(dir, "d/link"));
    const n = await clampTimes(dir, epoch);
    assert.equal(n, 4, "dir, d, d/new, d/link");
    for (const p of ["", "d", "d/new", "d/link"]) assert.equal(Math.floor((await lstat(path.join(dir, p))).mtimeMs / 1000), epoch, p || ".");
    assert.equal((await stat(path.join(dir, "old"))).mtimeMs / 1000, 1_600_000_000);
    assert.ok((await stat(outside)).mtimeMs / 1000 > epoch, "the link's target keeps its time");
    await rm(outside);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("removeBuildState: logs emptied with their modes kept, caches, *-old backups and the random seed removed, the rest untouched", async () => {
  const root = await tempDir();
  try {
    const put = async (p: string, text = "state\n") => {
      await mkdir(path.join(root, path.dirname(p)), { recursive: true });
      await writeFile(path.join(root, p), text);
    };
    for (const p of ["/var/log/dpkg.log", "/var/log/apt/history.log", "/var/log/apt/term.log", "/var/log/alternatives.log", "/var/log/btmp"]) await put(p);
    await chmod(path.join(root, "var/log/btmp"), 0o660);
    for (const p of ["/var/cache/ldconfig/aux-cache", "/var/lib/systemd/random-seed", "/var/cache/fontconfig/x.cache-8", "/var/cache/man/index.db", "/var/lib/dpkg/status-old", "/var/cache/debconf/config.dat-old"]) await put(p);
    await put("/var/lib/dpkg/status", "Package: a\n");
    await put("/etc/ld.so.cache", "cache");
    const lines: string[] = [];
    await removeBuildState(root, { line: (l) => lines.push(l) });
    for (const p of ["var/log/dpkg.log", "var/log/apt/history.log", "var/log/apt/term.log", "var/log/alternatives.log", "var/log/btmp"]) assert.equal((await stat(path.join(root, p))).size, 0, p);
    assert.equal((await stat(path.join(root, "var/log/btmp"))).mode & 0o777, 0o660);
    for (const p of ["var/cache/ldconfig/aux-cache", "var/lib/systemd/random-seed", "var/cache/fontconfig/x.cache-8", "var/cache/man/index.db", "var/lib/dpkg/status-old", "var/cache/debconf/config.dat-old"]) {
      assert.equal(await lstat(path.join(root, p)).catch(() => undefined), undefined, p);
    }
    assert.ok((await stat(path.join(root, "var/cache/fontconfig"))).isDirectory(), "the cache dir itself stays");
    assert.equal(await readFile(path.join(root, "var/lib/dpkg/status"), "utf8"), "Package: a\n");
    assert.equal(await readFile(path.join(root, "etc/ld.so.cache"), "utf8"), "cache");
    assert.match(lines.join("\n"), /emptied logs: .*\/var\/log\/dpkg\.log/);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

test("removeBuildState: an image's symlink does not lead it out of the root", async () => {
  const root = await tempDir();
  const host = await tempDir();
  try {
    await writeFile(path.join(host, "precious.log"), "keep me");
    await mkdir(path.join(root, "var"), { recursive: true });
    await symlink(host, path.join(root, "var/log"));
    await removeBuildState(root, { line: () => {} });
    assert.equal(await readFile(path.join(host, "precious.log"), "utf8"), "keep me");
  } finally {
    await rm(root, { recursive: true, force: true });
    await rm(host, { recursive: true, force: true });
  }
});

test("newestMtime: the newest file of an imported tree, directories left out", async () => {
  const dir = await tempDir();
  try {
    await mkdir(path.join(dir, "etc"));
    await writeFile(path.join(dir, "etc/a"), "a");
    await writeFile(path.join(dir, "b"), "b");
    await utimes(path.join(dir, "etc/a"), 1_500_000_000, 1_500_000_001);
    await utimes(path.join(dir, "b"), 1_400_000_000, 1_400_000_000);
    assert.equal(await newestMtime(dir), 1_500_000_001);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("isoDate: xorriso's --modification-date in UTC, whatever TZ says", () => {
  assert.equal(isoDate(Date.UTC(2025, 4, 17, 9, 8, 23) / 1000), "2025051709082300");
});

test("sfdiskScript: GPT disk and partition GUIDs fixed when given, sfdisk's own otherwise", () => {
  const l = planDiskLayout({ rootNeeds: 300 * MIB, extras: [] });
  const guids = { disk: "11111111-2222-8333-8444-555555555555", partitions: { bios: "a", esp: "b", root: "c" } };
  const s = sfdiskScript(l, guids);
  assert.match(s, /^label: gpt\nlabel-id: 11111111-2222-8333-8444-555555555555\nfirst-lba: 2048\n/);
  assert.match(s, /name="root", uuid=c\n/);
  assert.doesNotMatch(sfdiskScript(l), /uuid|label-id/);
});

const env: PlanInputs = {
  tools: Object.fromEntries(Object.keys(TOOL_PACKAGES).map((t) => [t, "1.0"])) as ToolVersions,
  hostSources: parseDeb822Sources("Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\nComponents: main\n"),
  initramfsDigest: "sha256:aaaa",
};
const RECIPE = `apiVersion: kiln/v1
name: t
base: { debian: bookworm }
kernels: [{ flavor: generic, package: linux-image-amd64 }]
outputs: [squashfs, qcow2, iso]
`;
function load(text: string): LoadedRecipe {
  return { recipe: parseRecipe(text, "r.yaml", "/recipes/a"), file: "/recipes/a/r.yaml", dir: "/recipes/a", sha256: "x", inputs: {} };
}

test("the recipe's epoch is in the base stage's key, so every stage's key changes with it; without it the bootstrap reads the Release date", () => {
  const keys = (text: string) => {
    const p = planBuild(load(text), env);
    return [...p.root, ...p.kernels, ...p.artifacts].map((s) => [s.name, s.key, s.options] as const);
  };
  const release = keys(RECIPE);
  const fixed = keys(RECIPE + "epoch: 1700000000\n");
  assert.deepEqual((release[0]![2] as { epoch: unknown }).epoch, "release");
  assert.deepEqual((fixed[0]![2] as { epoch: unknown }).epoch, 1700000000);
  for (let i = 0; i < release.length; i++) assert.notEqual(fixed[i]![1], release[i]![1], release[i]![0]);
  assert.notEqual(keys(RECIPE + "epoch: 1700000001\n")[0]![1], fixed[0]![1]);
});

test("an import's epoch: the recipe's, else the newest file of the image", () => {
  const imp = (extra: string) => planBuild(load(`apiVersion: kiln/v1\nname: t\nbase: { image: ./x.squashfs, format: squashfs }\npackages: [curl]\noutputs: [squashfs]\n${extra}`), env).root[0]!.options as { epoch: unknown };
  assert.equal(imp("").epoch, "newest-file");
  assert.equal(imp("epoch: 5\n").epoch, 5);
});

test("a bad epoch is refused naming the field and what to give", () => {
  for (const bad of ["-1", "1.5", '"yesterday"']) {
    assert.throws(
      () => load(RECIPE + `epoch: ${bad}\n`),
      (e: unknown) => e instanceof KilnError && e.code === "RECIPE_INVALID" && /epoch/.test(e.message) && /seconds since 1970|integer|at least 0|>=0/i.test(e.message),
      bad,
    );
  }
});
