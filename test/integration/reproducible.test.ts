// Reproducible builds, for real (root): one small recipe (minbase + systemd-sysv, one kernel
// flavor, every output including the rootfs tarball, qcow2 and ISO) built twice with --no-cache,
// each in its own scratch dir (cache, work and out dirs), one after the other (minutes apart), the
// first under TZ=UTC and the second under TZ=Asia/Tokyo in a UTS namespace of its own with
// another host name. Every artifact result.json lists must be bit-identical (docs/reproducible.md
// says which are covered: all but provenance.json and SHA256SUMS, which carry the build's times),
// and so must the IMS manifest.json. On a difference the test fails naming the files, with
// diffoscope's report of each. Two cold builds of a small image: 6-12 minutes on 2 cores.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import type { BuildResult } from "../../src/artifacts/result.js";
import { fileDigest } from "../../src/cache/key.js";
import { loopsUnder, mountsUnder, processesUnder } from "../helpers/host.js";
import { runKiln, scratch, startKiln } from "../helpers/kiln.js";

const RECIPE = `apiVersion: kiln/v1
name: repro-test
base: { debian: bookworm, variant: minbase }
packages: [systemd-sysv]
files: [{ path: /etc/motd, content: "reproducible\\n" }]
kernels:
  - flavor: generic
    package: linux-image-amd64
outputs: [squashfs, kernel, initrd, manifest, tarball, qcow2, iso]
`;

/** Artifacts that state the time of the build by design (docs/reproducible.md, "Not covered"). */
const TIMED = new Set(["provenance.json", "SHA256SUMS", "SHA256SUMS.gpg"]);

/** diffoscope's text report of two files, cut short: what a reader needs to see where they differ. */
function diffoscope(a: string, b: string): string {
  const r = spawnSync("diffoscope", ["--text", "-", "--no-progress", "--max-report-size", "200000", "--max-diff-block-lines", "40", "--timeout", "300", a, b], {
    encoding: "utf8",
    maxBuffer: 64 << 20,
    timeout: 900_000,
  });
  const text = `${r.stdout ?? ""}${r.stderr ?? ""}`;
  return text.length > 20000 ? `${text.slice(0, 20000)}\n… (${text.length} characters in all)` : text;
}

describe("reproducible builds: two --no-cache builds at other times, time zones, host names and dirs give the same bytes", () => {
  let s1: Awaited<ReturnType<typeof scratch>>;
  let s2: Awaited<ReturnType<typeof scratch>>;
  const results: BuildResult[] = [];

  before(async () => {
    s1 = await scratch("kiln-repro-a-");
    s2 = await scratch("kiln-repro-b-");
    await writeFile(s1.out("recipe.yaml"), RECIPE);
    await writeFile(s2.out("recipe.yaml"), RECIPE);
  });
  after(async () => {
    for (const s of [s1, s2]) {
      assert.deepEqual(await mountsUnder(s.dir), [], "no mounts left");
      assert.deepEqual(loopsUnder(s.dir), [], "no loop devices left");
      assert.deepEqual(processesUnder(s.dir), [], "no processes left");
      await rm(s.dir, { recursive: true, force: true });
    }
  });

  test("builds the recipe twice: TZ=UTC here, then TZ=Asia/Tokyo under another host name", async () => {
    const first = await runKiln(["build", s1.out("recipe.yaml"), "--out", s1.out("out"), "--cache-dir", s1.cache, "--no-cache", "--no-verify"], { env: { TZ: "UTC" } });
    assert.equal(first.code, 0, first.stderr + first.stdout.slice(-3000));
    // sh -c: the new UTS namespace gets its own host name, then the build replaces the shell.
    const prefix = ["unshare", "--uts", "sh", "-c", 'hostname kiln-repro-other && test "$(hostname)" = kiln-repro-other && exec "$0" "$@"'];
    const second = await startKiln(["build", s2.out("recipe.yaml"), "--out", s2.out("out"), "--cache-dir", s2.cache, "--no-cache", "--no-verify"], { env: { TZ: "Asia/Tokyo" }, prefix }).done;
    assert.equal(second.code, 0, second.stderr + second.stdout.slice(-3000));
    for (const s of [s1, s2]) results.push(JSON.parse(await readFile(path.join(s.out("out"), "result.json"), "utf8")) as BuildResult);
    const apart = (Date.parse(results[1]!.kiln.created) - Date.parse(results[0]!.kiln.created)) / 1000;
    assert.ok(apart >= 60, `the builds ended ${apart} s apart: every clock-derived value had a chance to differ`);
    // Both read the same epoch from the archive (the bootstrap's log says which).
    const epochOf = async (s: typeof s1) => /SOURCE_DATE_EPOCH=(\d+)/.exec(await readFile(path.join(s.out("out"), "logs/bootstrap.log"), "utf8"))?.[1];
    const e1 = await epochOf(s1);
    assert.ok(e1, "the bootstrap log names the epoch");
    assert.equal(await epochOf(s2), e1);
  });

  test("every artifact and the IMS manifest are bit-identical (else: diffoscope's report of each file that differs)", async () => {
    assert.equal(results.length, 2, "both builds ran");
    const paths = (r: BuildResult) => r.artifacts.map((a) => a.path).sort();
    assert.deepEqual(paths(results[1]!), paths(results[0]!), "the same artifacts");
    const compared = [...paths(results[0]!).filter((p) => !TIMED.has(p)), "manifest.json"];
    for (const kind of ["squashfs", "boot-kernel", "boot-initrd", "rootfs.tar.zst", "disk.qcow2", "live.iso", "squashfs.manifest", "sbom.spdx.json", "sbom.cdx.json"]) {
      assert.ok(compared.some((p) => path.basename(p) === kind), `${kind} is among the compared files`);
    }
    const differ: string[] = [];
    for (const p of compared) {
      if ((await fileDigest(path.join(s1.out("out"), p))) !== (await fileDigest(path.join(s2.out("out"), p)))) differ.push(p);
    }
    const reports = differ.map((p) => `=== ${p}\n${diffoscope(path.join(s1.out("out"), p), path.join(s2.out("out"), p))}`);
    assert.deepEqual(differ, [], `these artifacts differ between the two builds:\n${reports.join("\n")}`);
  });

  test("SHA256SUMS of one build checks the other's artifacts; only provenance.json (its two times) differs", () => {
    const r = spawnSync("sha256sum", ["-c", path.join(s1.out("out"), "SHA256SUMS")], { cwd: s2.out("out"), encoding: "utf8" });
    const failed = r.stdout.split("\n").filter((l) => l.trim() !== "" && !l.endsWith(": OK"));
    assert.deepEqual(failed, ["provenance.json: FAILED"], r.stdout + r.stderr);
  });
});
