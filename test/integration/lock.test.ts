// kiln.lock and kiln rebuild, for real (root, Debian's archive, the shared apt cache): a minbase
// root with one package and one flavor. The lock lists the root's and the flavor's packages with
// the sha256 of their .debs; `kiln rebuild` builds it again with --lock in a scratch cache and
// gets the same versions; a lock naming versions the archive does not offer fails with exit 2
// naming every one of them before any stage runs; a bad lock file fails naming its field.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFile, rm, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import type { BuildResult, ImsManifest } from "../../src/artifacts/result.js";
import { fileDigest } from "../../src/cache/key.js";
import type { ProvenanceStatement } from "../../src/attest/provenance.js";
import { debFileName } from "../../src/attest/debian.js";
import { parseLock, type KilnLock } from "../../src/lock/lock.js";
import type { RebuildReport } from "../../src/rebuild/rebuild.js";
import { mountsUnder, processesUnder } from "../helpers/host.js";
import { runKiln, scratch } from "../helpers/kiln.js";

const RECIPE = `apiVersion: kiln/v1
name: lock-test
base: { debian: bookworm, variant: minbase }
packages: [less]
kernels:
  - flavor: generic
    package: linux-image-amd64
outputs: [manifest, kernel, initrd]
verify: none
`;

let s: Awaited<ReturnType<typeof scratch>>;
let lock: KilnLock;
let lockText: string;
const out = () => s.out("out");
const json = async <T>(rel: string, dir = out()) => JSON.parse(await readFile(path.join(dir, rel), "utf8")) as T;

before(async () => {
  s = await scratch("kiln-lock-");
  await writeFile(s.out("recipe.yaml"), RECIPE);
  const r = await runKiln(["build", s.out("recipe.yaml"), "--cache-dir", s.cache, "--out", out(), "--no-verify", "--json"]);
  assert.equal(r.code, 0, r.stderr + r.stdout.slice(-3000));
  lockText = await readFile(path.join(out(), "kiln.lock"), "utf8");
  lock = parseLock(lockText, "kiln.lock");
});

after(async () => {
  assert.deepEqual(await mountsUnder(s.dir), [], "no mounts left");
  assert.deepEqual(processesUnder(s.dir), [], "no processes left");
  await rm(s.dir, { recursive: true, force: true });
});

describe("kiln build writes out/kiln.lock", () => {
  test("the root's and the flavor's packages, each with its suite and the sha256 of its .deb", async () => {
    const less = lock.root.find((p) => p.name === "less");
    assert.ok(less, "the recipe's package is in the root");
    assert.ok(lock.root.some((p) => p.name === "dpkg"), "the essential set is in the root");
    assert.ok(lock.flavors.generic?.some((p) => p.name === "linux-image-amd64"), "the flavor's kernel is the flavor's");
    assert.ok(!lock.root.some((p) => p.name === "linux-image-amd64"), "not the root's");
    const all = [...lock.root, ...lock.flavors.generic!];
    assert.deepEqual(all.filter((p) => !p.sha256 || !p.suite).map((p) => p.name), [], "every package has its suite and .deb sha256");
    assert.ok(lock.sources.some((x) => x.suite === "bookworm" && /^[0-9a-f]{64}$/.test(x.sha256) && x.date), "Debian's Release file with date and digest");
    // The manifest (dpkg's own list) and the lock agree on the root's versions.
    const manifest = new Map((await readFile(path.join(out(), "squashfs.manifest"), "utf8")).trim().split("\n").map((l) => l.split("\t") as [string, string]));
    for (const p of lock.root) assert.equal(manifest.get(p.name) ?? manifest.get(`${p.name}:${p.arch}`), p.version, p.name);
    // The sha256 is that of the .deb itself, for every .deb the shared apt cache has.
    const archives = path.join(s.cache, "apt", "archives");
    let checked = 0;
    for (const p of all) {
      const deb = await fileDigest(path.join(archives, debFileName(p))).catch(() => undefined);
      if (deb === undefined) continue;
      assert.equal(p.sha256, deb, `${p.name} ${p.version}`);
      checked++;
    }
    assert.ok(checked >= all.length / 2, `.debs compared: ${checked} of ${all.length}`);
  });

  test("the lock is an artifact: result.json, manifest.json, SHA256SUMS, the provenance; attest verify passes", async () => {
    const result = await json<BuildResult>("result.json");
    const a = result.artifacts.find((x) => x.path === "kiln.lock");
    assert.equal(a?.type, "application/vnd.kiln.lock+json");
    assert.equal(a?.sha256, await fileDigest(path.join(out(), "kiln.lock")));
    assert.equal(result.recipe.file, s.out("recipe.yaml"));
    assert.ok((await json<ImsManifest>("manifest.json")).artifacts.some((x) => x.link.path === "kiln.lock" && x.type === a.type));
    assert.match(await readFile(path.join(out(), "SHA256SUMS"), "utf8"), new RegExp(`^${a.sha256}  kiln\\.lock$`, "m"));
    assert.ok((await json<ProvenanceStatement>("provenance.json")).subject.some((x) => x.name === "kiln.lock" && x.digest.sha256 === a.sha256));
    const v = await runKiln(["attest", "verify", out()]);
    assert.equal(v.code, 0, v.stdout + v.stderr);
  });
});

describe("kiln build --lock", () => {
  test("a lock naming versions the archive does not offer fails with exit 2 naming every one, before any stage", async () => {
    const edited = JSON.parse(lockText) as KilnLock;
    const gone = ["less", "dpkg"];
    for (const p of edited.root) if (gone.includes(p.name)) p.version = "99.9-kiln-missing";
    edited.flavors.generic!.find((p) => p.name === "linux-image-amd64")!.version = "99.9-kiln-missing";
    await writeFile(s.out("edited.lock"), JSON.stringify(edited));
    const r = await runKiln(["build", s.out("recipe.yaml"), "--cache-dir", s.cache, "--out", s.out("out-missing"), "--no-verify", "--json", "--lock", s.out("edited.lock")]);
    assert.equal(r.code, 2, r.stderr + r.stdout.slice(-2000));
    assert.match(r.stderr, /3 locked package versions are not offered by the apt sources/);
    for (const n of [...gone, "linux-image-amd64"]) assert.match(r.stderr, new RegExp(`${n}=99\\.9-kiln-missing \\(`), n);
    assert.doesNotMatch(r.stdout, /"type":"stage-start"/, "no stage ran");
  });

  test("pins: a lock naming an older version the sources still offer installs that one, in the bootstrap's essential set", async (t) => {
    // bookworm-security still offers the glibc bookworm itself has replaced: an unlocked build takes the newer one.
    const older = "2.36-9+deb12u7";
    const root = new Map(lock.root.map((p) => [p.name, p]));
    if (root.get("libc6")!.version === older) {
      t.skip("the archive offers no newer libc6 than the security one");
      return;
    }
    const pinned = JSON.parse(lockText) as KilnLock;
    for (const p of pinned.root) {
      if (p.name !== "libc6" && p.name !== "libc-bin") continue;
      p.version = older;
      p.suite = "bookworm-security";
      delete p.sha256;
    }
    await writeFile(s.out("pinned.lock"), JSON.stringify(pinned));
    const r = await runKiln(["build", s.out("recipe.yaml"), "--cache-dir", s.cache, "--out", s.out("out-pinned"), "--no-verify", "--json", "--lock", s.out("pinned.lock")]);
    assert.equal(r.code, 0, r.stderr + r.stdout.slice(-3000));
    const got = parseLock(await readFile(path.join(s.out("out-pinned"), "kiln.lock"), "utf8"), "kiln.lock");
    assert.equal(got.root.find((p) => p.name === "libc6")?.version, older);
    assert.equal(got.root.find((p) => p.name === "libc-bin")?.version, older);
    assert.equal(got.root.find((p) => p.name === "less")?.version, root.get("less")!.version, "the rest as locked");
    const manifest = await readFile(path.join(s.out("out-pinned"), "squashfs.manifest"), "utf8");
    assert.match(manifest, new RegExp(`^libc6(:amd64)?\t${older.replaceAll("+", "\\+")}$`, "m"));
  });

  test("a bad lock file fails with exit 2 naming the field", async () => {
    await writeFile(s.out("bad.lock"), JSON.stringify({ ...JSON.parse(lockText), kilnLock: 7 }));
    const r = await runKiln(["build", s.out("recipe.yaml"), "--cache-dir", s.cache, "--out", s.out("out-bad"), "--no-verify", "--lock", s.out("bad.lock")]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /bad\.lock: not a valid Kiln lock: kilnLock: the lock format version/);
  });
});

describe("kiln rebuild OUT", () => {
  test("builds again from the lock in a scratch cache, compares every artifact, same versions", async () => {
    const kept = s.out("rebuilt");
    // The root's .debs in the shared apt cache, which the rebuild's bootstrap links in and out.
    const archives = path.join(s.cache, "apt", "archives");
    const inodes = new Map<string, number>();
    for (const p of lock.root) {
      const st = await stat(path.join(archives, debFileName(p))).catch(() => undefined);
      if (st) inodes.set(debFileName(p), st.ino);
    }
    assert.ok(inodes.size >= lock.root.length / 2, `.debs of the root in the shared cache: ${inodes.size} of ${lock.root.length}`);
    const r = await runKiln(["rebuild", out(), "--cache-dir", s.cache, "--keep", kept, "--json"], { env: { KILN_REBUILD_TMP: s.dir } });
    assert.ok(r.code === 0 || r.code === 1, `exit ${String(r.code)}: ${r.stderr.slice(-3000)}`);
    const report = JSON.parse(r.stdout) as RebuildReport;
    // Every artifact of the original but the signature is compared, each with a verdict from the files.
    const original = (await json<BuildResult>("result.json")).artifacts.map((a) => a.path).filter((p) => p !== "SHA256SUMS.gpg").sort();
    assert.deepEqual(report.artifacts.filter((a) => a.verdict !== "added").map((a) => a.path).sort(), original);
    for (const a of report.artifacts) {
      if (a.original && a.rebuilt) assert.equal(a.verdict === "identical", a.original === a.rebuilt, a.path);
      if (a.verdict === "different") assert.ok(report.diffoscope ? a.diffoscope !== undefined : /not installed/.test(a.diffoscope ?? ""), a.path);
    }
    assert.equal(r.code, report.identical ? 0 : 1, "exit 0 only when all are identical");
    assert.equal(report.identical, report.artifacts.every((a) => a.verdict === "identical"));
    // The locked rebuild installed the very versions: its lock and package list are the original's bytes.
    assert.equal(report.artifacts.find((a) => a.path === "kiln.lock")?.verdict, "identical");
    assert.equal(report.artifacts.find((a) => a.path === "squashfs.manifest")?.verdict, "identical");
    assert.equal((await json<BuildResult>("result.json", kept)).lock?.sha256, (await json<BuildResult>("result.json")).artifacts.find((a) => a.path === "kiln.lock")!.sha256);
    assert.equal((await json<ProvenanceStatement>("provenance.json", kept)).predicate.buildDefinition.externalParameters.lock?.digest.sha256, report.artifacts.find((a) => a.path === "kiln.lock")!.original);
    // The bootstrap linked the .debs through its own archives dir: the shared .debs are the same
    // files. (mmdebstrap's sync-out into the shared dir re-created each, and two bootstraps at once failed.)
    for (const [name, ino] of inodes) assert.equal((await stat(path.join(archives, name))).ino, ino, `${name} was re-written in the shared apt cache`);
    // The scratch cache is gone.
    assert.doesNotMatch((await import("node:fs/promises").then((f) => f.readdir(s.dir))).join(" "), /kiln-rebuild-/);
  });

  test("an out dir whose recipe changed since is exit 2 naming it", async () => {
    await writeFile(s.out("recipe.yaml"), RECIPE + "# changed\n");
    try {
      const r = await runKiln(["rebuild", out(), "--cache-dir", s.cache]);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, /the recipe changed since the build: .*recipe\.yaml has sha256/);
    } finally {
      await writeFile(s.out("recipe.yaml"), RECIPE);
    }
  });
});
