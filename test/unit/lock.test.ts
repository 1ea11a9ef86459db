// kiln.lock: its format (stable bytes, a version field), what a bad lock is refused for (exit 2
// naming the field), apt pins, mismatches, and reading apt's lists for suites and .deb digests.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { isKilnError } from "../../src/errors.js";
import { mergeIndexes, readAptIndex } from "../../src/lock/apt-index.js";
import { lockAptLines, lockedPackages } from "../../src/lock/lock-check.js";
import { aptPreferences, checkLockedBase, flavorPackages, formatLock, lockMismatches, parseLock, readLock, type KilnLock } from "../../src/lock/lock.js";
import { provenanceStatement } from "../../src/attest/provenance.js";

const SHA_A = "a".repeat(64);
const SHA_B = "b".repeat(64);

function sample(): KilnLock {
  return {
    kilnLock: 1,
    arch: "amd64",
    sources: [
      { uri: "deb.debian.org/debian-security", suite: "bookworm-security", components: ["main"], release: "InRelease", sha256: SHA_B },
      { uri: "deb.debian.org/debian", suite: "bookworm", components: ["main"], date: "Sat, 11 Jul 2026 10:16:37 UTC", release: "InRelease", sha256: SHA_A },
    ],
    root: [
      { name: "libc6", version: "2.36-9+deb12u7", arch: "amd64", suite: "bookworm-security", sha256: SHA_B },
      { name: "adduser", version: "3.134", arch: "all", suite: "bookworm", sha256: SHA_A },
    ],
    flavors: { generic: [{ name: "linux-image-6.1.0-40-amd64", version: "6.1.153-1", arch: "amd64", suite: "bookworm-security", sha256: SHA_A }] },
  };
}

let dir: string;
before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "kiln-lock-"));
});
after(() => rm(dir, { recursive: true, force: true }));

/** The INPUT_INVALID message parseLock throws for `text`. */
function refusal(text: string): string {
  try {
    parseLock(text, "kiln.lock");
  } catch (e) {
    assert.ok(isKilnError(e), `not a KilnError: ${String(e)}`);
    assert.equal(e.code, "INPUT_INVALID");
    assert.equal(e.exitCode, 2);
    return e.message;
  }
  assert.fail("the lock was accepted");
}

describe("format", () => {
  test("the same lock gives the same bytes whatever the order it was gathered in, and reads back", () => {
    const a = sample();
    const b = sample();
    b.root.reverse();
    b.sources.reverse();
    const text = formatLock(a);
    assert.equal(formatLock(b), text);
    assert.deepEqual(JSON.parse(text).root.map((p: { name: string }) => p.name), ["adduser", "libc6"]);
    assert.equal(JSON.parse(text).kilnLock, 1);
    assert.deepEqual(formatLock(parseLock(text, "kiln.lock")), text);
  });

  test("a version that looks like a number stays a string (JSON, not YAML)", () => {
    const l = sample();
    l.root[1]!.version = "1.10";
    assert.equal(parseLock(formatLock(l), "x").root.find((p) => p.name === "adduser")!.version, "1.10");
  });
});

describe("a bad lock is refused naming the field", () => {
  test("not JSON", () => assert.match(refusal("kilnLock: 1"), /kiln\.lock: not a Kiln lock \(not JSON/));
  test("another format version", () => assert.match(refusal(JSON.stringify({ ...sample(), kilnLock: 2 })), /kilnLock: the lock format version: this Kiln reads 1/));
  test("a package without a version, another with a bad sha256: both named", () => {
    const l = sample() as unknown as { root: Array<Record<string, unknown>>; flavors: Record<string, Array<Record<string, unknown>>> };
    delete l.root[0]!.version;
    l.flavors.generic![0]!.sha256 = "xyz";
    const m = refusal(JSON.stringify(l));
    assert.match(m, /root\[0\]\.version/);
    assert.match(m, /flavors\.generic\[0\]\.sha256: a sha256/);
  });
  test("an unknown field", () => assert.match(refusal(JSON.stringify({ ...sample(), extra: 1 })), /extra|Unrecognized key/));
  test("a package twice", () => {
    const l = sample();
    l.root.push({ ...l.root[0]!, version: "2.36-9+deb12u14" });
    assert.match(refusal(JSON.stringify(l)), /root\[2\]: libc6 \(amd64\) is listed twice/);
  });
  test("a file that cannot be read is exit 2 naming --lock", async () => {
    await assert.rejects(readLock(path.join(dir, "nope.lock")), (e: unknown) => isKilnError(e) && e.exitCode === 2 && /--lock .*nope\.lock: cannot read it \(ENOENT\)/.test(e.message));
  });
});

describe("using a lock", () => {
  test("a lock pins the base image: another image, an import's lock on a bootstrap and the other way round are exit 2 naming base.image", () => {
    const imported: KilnLock = { ...sample(), base: { image: { file: "images/base.squashfs", sha256: SHA_A } } };
    const refused = (lock: KilnLock, recipe: { file: string; sha256: string } | undefined, re: RegExp) =>
      assert.throws(() => checkLockedBase(lock, "kiln.lock", recipe), (e: unknown) => isKilnError(e) && e.exitCode === 2 && re.test(e.message) && /base\.image/.test(e.message));
    assert.doesNotThrow(() => checkLockedBase(imported, "kiln.lock", { file: "moved/base.squashfs", sha256: SHA_A }), "the same image, moved: the digest is what counts");
    assert.doesNotThrow(() => checkLockedBase(sample(), "kiln.lock", undefined));
    refused(imported, { file: "images/base.squashfs", sha256: SHA_B }, new RegExp(`--lock kiln\\.lock: base\\.image: the recipe's image images/base\\.squashfs has sha256 ${SHA_B}, the lock pins ${SHA_A}`));
    refused(imported, undefined, /the lock was made from an import of images\/base\.squashfs .* but the recipe bootstraps Debian/);
    refused(sample(), { file: "images/base.squashfs", sha256: SHA_A }, /the recipe imports images\/base\.squashfs, but the lock pins no base image/);
  });
  test("pins: one stanza per package above 1000, so apt downgrades to it", () => {
    const p = aptPreferences(sample().root);
    assert.equal(p, "Package: adduser\nPin: version 3.134\nPin-Priority: 1001\n\nPackage: libc6\nPin: version 2.36-9+deb12u7\nPin-Priority: 1001\n");
  });
  test("a flavor's packages are the root's with the flavor's own over them", () => {
    const l = sample();
    l.flavors.generic!.push({ name: "libc6", version: "2.36-9+deb12u14", arch: "amd64" });
    const f = flavorPackages(l, "generic");
    assert.equal(f.length, 3);
    assert.equal(f.find((p) => p.name === "libc6")!.version, "2.36-9+deb12u14");
    assert.equal(lockedPackages(l).length, 4);
  });
  test("mismatches: another version or another .deb digest; packages the build lacks are not one", () => {
    const want = sample().root;
    const got = [
      { ...want[0]!, version: "2.36-9+deb12u14" },
      { ...want[1]!, sha256: SHA_B },
    ];
    assert.deepEqual(lockMismatches(want, got), [
      "libc6 (amd64): the lock has 2.36-9+deb12u7, the build installed 2.36-9+deb12u14",
      `adduser 3.134 (all): the lock's .deb sha256 is ${SHA_A}, the build's ${SHA_B}`,
    ]);
    assert.deepEqual(lockMismatches(want, []), []);
  });
  test("the lock's sources as apt lines (http where apt's list name dropped the scheme)", () => {
    assert.deepEqual(lockAptLines(sample()), ["deb http://deb.debian.org/debian-security bookworm-security main", "deb http://deb.debian.org/debian bookworm main"]);
  });
});

describe("apt lists", () => {
  test("suites, .deb digests and Release files of the installed packages", async () => {
    const lists = path.join(dir, "lists");
    await mkdir(lists, { recursive: true });
    const release = "Origin: Debian\nSuite: stable\nCodename: bookworm\nDate: Sat, 11 Jul 2026 10:16:37 UTC\n";
    await writeFile(path.join(lists, "deb.debian.org_debian_dists_bookworm_InRelease"), release);
    await writeFile(path.join(lists, "127.0.0.1:8080_my%5frepo_dists_bookworm-kiln_Release"), "Date: Mon, 01 Jan 2026 00:00:00 UTC\n");
    await writeFile(
      path.join(lists, "deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages"),
      `Package: libc6\nVersion: 2.36-9+deb12u14\nArchitecture: amd64\nSHA256: ${SHA_A}\n\nPackage: libc6\nVersion: 2.36-9+deb12u7\nArchitecture: amd64\nSHA256: ${SHA_B}\n\nPackage: other\nVersion: 1\nArchitecture: all\nSHA256: ${SHA_A}\n`,
    );
    await writeFile(path.join(lists, "127.0.0.1:8080_my%5frepo_dists_bookworm-kiln_main_binary-amd64_Packages"), `Package: tool\nVersion: 1:2.0\nArchitecture: all\nSHA256: ${SHA_B}\n`);
    const i = await readAptIndex(lists, [
      { name: "libc6", version: "2.36-9+deb12u7", arch: "amd64" },
      { name: "tool", version: "1:2.0", arch: "all" },
      { name: "gone", version: "1", arch: "all" },
    ]);
    assert.deepEqual(i.packages, { "libc6 2.36-9+deb12u7 amd64": { suite: "bookworm", sha256: SHA_B }, "tool 1:2.0 all": { suite: "bookworm-kiln", sha256: SHA_B } });
    const debian = i.sources.find((s) => s.suite === "bookworm")!;
    assert.deepEqual(debian, { uri: "deb.debian.org/debian", suite: "bookworm", components: ["main"], date: "Sat, 11 Jul 2026 10:16:37 UTC", release: "InRelease", sha256: createHash("sha256").update(release).digest("hex") });
    assert.equal(i.sources.find((s) => s.suite === "bookworm-kiln")!.uri, "127.0.0.1:8080/my_repo");
    // A later stage's index wins.
    const later = mergeIndexes([i, { sources: [], packages: { "tool 1:2.0 all": { suite: "later" } } }]);
    assert.equal(later.packages["tool 1:2.0 all"]!.suite, "later");
    assert.equal(later.packages["libc6 2.36-9+deb12u7 amd64"]!.suite, "bookworm");
  });
});

test("provenance names a locked build's input lock by file name and digest", () => {
  const loaded = { recipe: { name: "r", base: { debian: "bookworm" }, repositories: [], files: [], caCertificates: [], scripts: [], ansible: [] } as never, file: "/src/r.yaml", dir: "/src", sha256: SHA_A, inputs: {} };
  const base = { loaded, subjects: [], stages: [], kilnVersion: "t", builderId: "b", startedOn: new Date(0), finishedOn: new Date(0) };
  const st = provenanceStatement({ ...base, lock: { file: "/elsewhere/out/kiln.lock", sha256: SHA_B } });
  assert.deepEqual(st.predicate.buildDefinition.externalParameters.lock, { file: "kiln.lock", digest: { sha256: SHA_B } });
  assert.ok(st.predicate.buildDefinition.resolvedDependencies.some((d) => d.name === "lock" && d.digest.sha256 === SHA_B));
  assert.equal(provenanceStatement(base).predicate.buildDefinition.externalParameters.lock, undefined);
});
