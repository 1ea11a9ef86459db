// End to end, for real (root): build examples/minimal.yaml with mmdebstrap, overlays, chroot and
// mksquashfs, boot its flavor diskless under qemu with the root over HTTP, rebuild from cache,
// import the squashfs it made and boot that, kill builds while two kernel flavors run at once to
// prove nothing leaks, then build two flavors side by side. The tests share one layer cache, in
// order (the two-flavor recipe reuses minimal's root); each boot costs ~1–2 minutes under TCG.
// Boots side by side are not forced here: two TCG guests on a 2-core machine is the overcommit
// the default --jobs avoids, and under load both hit the boot timeout (tried: 300 s each, load
// average 19). test/unit/verify-parallel.test.ts covers them with the guests faked.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFile, rm, stat, writeFile, readdir } from "node:fs/promises";
import path from "node:path";
import { fileDigests } from "../../src/cache/key.js";
import type { BuildResult, ImsManifest } from "../../src/artifacts/result.js";
import { loopsUnder, mountsUnder, processesUnder } from "../helpers/host.js";
import { parseLock, type KilnLock } from "../../src/lock/lock.js";
import { events, REPO, runKiln, scratch, startKiln } from "../helpers/kiln.js";

describe("kiln build, for real", () => {
  let s: Awaited<ReturnType<typeof scratch>>;
  let minimal: BuildResult;
  const outMin = () => s.out("out-min");

  before(async () => {
    s = await scratch();
  });
  after(async () => {
    assert.deepEqual(await mountsUnder(s.dir), [], "no mounts left");
    assert.deepEqual(loopsUnder(s.dir), [], "no loop devices left");
    await rm(s.dir, { recursive: true, force: true });
  });

  test("builds examples/minimal.yaml and boots its flavor diskless", async () => {
    const r = await runKiln(["build", "examples/minimal.yaml", "--out", outMin(), "--cache-dir", s.cache, "--json"]);
    assert.equal(r.code, 0, r.stderr + r.stdout.slice(-3000));
    minimal = JSON.parse(await readFile(path.join(outMin(), "result.json"), "utf8")) as BuildResult;

    assert.deepEqual(minimal.stages.map((x) => [x.name, x.cached]), [
      ["bootstrap", false], ["packages", false], ["seal", false], ["kernel:generic", false], ["squashfs", false], ["manifest", false],
    ]);
    for (const a of minimal.artifacts) {
      const d = await fileDigests(path.join(outMin(), a.path));
      assert.equal(d.sha256, a.sha256, a.path);
      assert.equal(d.size, a.size, a.path);
    }
    const kernel = minimal.artifacts.find((a) => a.name === "boot-kernel")!;
    assert.equal(kernel.path, "generic/boot-kernel");
    assert.equal(kernel.type, "application/vnd.cray.image.kernel");
    assert.equal(kernel.kpackage, "linux-image-amd64");
    assert.match(await readFile(path.join(outMin(), "generic/boot-params"), "utf8"), /^root=squash:\$\{squashfs_url\} ip=dhcp/);

    const ims = JSON.parse(await readFile(path.join(outMin(), "manifest.json"), "utf8")) as ImsManifest;
    assert.equal(ims.version, "1.0");
    assert.deepEqual(ims.artifacts.map((a) => a.type).sort(), [
      "application/spdx+json", "application/vnd.cray.image.initrd", "application/vnd.cray.image.kernel",
      "application/vnd.cray.image.parameters.boot", "application/vnd.cray.image.rootfs.squashfs", "application/vnd.cyclonedx+json",
      "application/vnd.kiln.lock+json",
    ]);
    const manifest = await readFile(path.join(outMin(), "squashfs.manifest"), "utf8");
    assert.match(manifest, /^systemd\t\S+$/m);

    // apt lists (docs/cache.md#apt-lists): the bootstrap and the packages layer keep the indexes
    // beside their trees, each child's apt update starts from its parent's (the main suite's index
    // is fetched once, by mmdebstrap: neither the packages layer nor the flavor fetches it again),
    // and no layer tree holds indexes or apt's binary caches.
    const keyOf = (name: string) => minimal.stages.find((x) => x.name === name)!.key;
    for (const layer of ["bootstrap", "packages"]) {
      const kept = await readdir(path.join(s.cache, "layers", keyOf(layer), "apt-lists"));
      assert.ok(kept.some((f) => f.endsWith("_InRelease")), `${layer}: ${kept.join(" ")}`);
      assert.ok(kept.some((f) => /_dists_bookworm_main_binary-[^_]+_Packages$/.test(f)), `${layer}: ${kept.join(" ")}`);
    }
    await assert.rejects(readdir(path.join(s.cache, "layers", keyOf("kernel:generic"), "apt-lists")), "a leaf layer keeps no lists");
    const mainIndex = /^Get:\d+ \S+ bookworm\/main \S+ Packages/m; // 9 MB; changes only at a point release
    const release = /^(Get|Hit):\d+ \S+ bookworm InRelease/m; // the update did run, and read the main suite
    for (const log of ["packages", "kernel-generic"]) {
      const text = await readFile(path.join(outMin(), "logs", `${log}.log`), "utf8");
      assert.match(text, release, `${log}: ${text.slice(0, 3000)}`);
      assert.doesNotMatch(text, mainIndex, `${log}: ${text.slice(0, 3000)}`);
    }
    for (const layer of ["bootstrap", "packages", "kernel:generic"]) {
      const tree = path.join(s.cache, "layers", keyOf(layer), "tree");
      assert.deepEqual((await readdir(path.join(tree, "var/lib/apt/lists")).catch(() => [])).filter((f) => f !== "partial" && f !== "lock"), [], layer);
      assert.deepEqual((await readdir(path.join(tree, "var/cache/apt")).catch(() => [])).filter((f) => f.endsWith(".bin")), [], layer);
    }

    // The boot: systemd reached userspace with the root fetched over HTTP.
    assert.equal(minimal.verify.length, 1);
    assert.equal(minimal.verify[0]!.ok, true, JSON.stringify(minimal.verify));
    const serial = await readFile(path.join(outMin(), minimal.verify[0]!.log), "utf8");
    assert.match(serial, /KILN-VERIFY-\d+/);

    // Sealed: nothing of this machine or of the build in the root.
    const list = execFileSync("unsquashfs", ["-lls", path.join(outMin(), "squashfs")], { encoding: "utf8", maxBuffer: 64 << 20 });
    assert.match(list, / 0 \S+ \S+ squashfs-root\/etc\/machine-id\n/, "machine-id is empty");
    assert.doesNotMatch(list, /etc\/ssh\/ssh_host_/);
    assert.doesNotMatch(list, /var\/lib\/apt\/lists\/[^/\n]*Packages/);
    assert.doesNotMatch(list, /squashfs-root\/boot\/vmlinuz/, "the kernel lives in its flavor, not in the root");
    assert.doesNotMatch(list, /usr\/sbin\/policy-rc\.d/);
    assert.match(list, / 0 \S+ \S+ squashfs-root\/etc\/resolv\.conf\n/, "resolv.conf is the image's own (empty)");
  });

  test("an unchanged rebuild reuses every stage and gives the same artifacts", async () => {
    const r = await runKiln(["build", "examples/minimal.yaml", "--out", outMin(), "--cache-dir", s.cache, "--no-verify", "--json"]);
    assert.equal(r.code, 0, r.stderr);
    const again = JSON.parse(await readFile(path.join(outMin(), "result.json"), "utf8")) as BuildResult;
    assert.ok(again.stages.every((x) => x.cached), JSON.stringify(again.stages));
    // provenance.json states the run's start and end, and SHA256SUMS sums it: all else is the same bytes.
    const timeless = (r: BuildResult) => r.artifacts.filter((a) => !["provenance.json", "SHA256SUMS"].includes(a.name)).map((a) => [a.path, a.sha256]);
    assert.deepEqual(timeless(again), timeless(minimal));
  });

  test("examples/upgrade.yaml takes tmux from the pinned extra repository, and nothing else", async () => {
    const out = s.out("out-upgrade");
    const r = await runKiln(["build", "examples/upgrade.yaml", "--out", out, "--cache-dir", s.cache, "--no-verify", "--json"]);
    assert.equal(r.code, 0, r.stderr + r.stdout.slice(-3000));
    const res = JSON.parse(await readFile(path.join(out, "result.json"), "utf8")) as BuildResult;
    const cached = Object.fromEntries(res.stages.map((x) => [x.name, x.cached]));
    assert.equal(cached.bootstrap, true, "same base as minimal: reused");
    const manifest = await readFile(path.join(out, "squashfs.manifest"), "utf8");
    assert.match(manifest, /^tmux\t\S*bpo\S*$/m, "tmux comes from bookworm-backports");
    assert.doesNotMatch(manifest.replace(/^tmux\t.*$/m, ""), /bpo/, "nothing else does");
    const pref = execFileSync("unsquashfs", ["-cat", path.join(out, "squashfs"), "etc/apt/preferences.d/kiln-backports.pref"], { encoding: "utf8" });
    assert.match(pref, /Pin: release n=bookworm-backports\nPin-Priority: 100/);
    const list = execFileSync("unsquashfs", ["-lls", path.join(out, "squashfs")], { encoding: "utf8", maxBuffer: 64 << 20 });
    assert.doesNotMatch(list, /kiln-upgrade\.pref/, "the temporary upgrade pin is gone");
  });

  test("imports a squashfs unchanged (byte for byte), adds a kernel layer and boots", async () => {
    const recipe = s.out("import.yaml");
    await writeFile(recipe, `apiVersion: kiln/v1
name: imported
base: { image: ./out-min/squashfs }
kernels: [{ flavor: generic, package: linux-image-amd64 }]
verify: boot
`);
    const out = s.out("out-import");
    const r = await runKiln(["build", recipe, "--out", out, "--cache-dir", s.cache, "--json"]);
    assert.equal(r.code, 0, r.stderr + r.stdout.slice(-3000));
    const res = JSON.parse(await readFile(path.join(out, "result.json"), "utf8")) as BuildResult;
    assert.equal(res.kiln.unchangedImport, true);
    assert.deepEqual(res.stages.map((x) => x.name), ["import", "kernel:generic", "squashfs", "manifest"]);
    const original = minimal.artifacts.find((a) => a.name === "squashfs")!;
    assert.equal(res.artifacts.find((a) => a.name === "squashfs")!.sha256, original.sha256, "the published squashfs is the original");
    assert.equal(res.verify[0]?.ok, true, JSON.stringify(res.verify));
  });

  test("the import's kiln.lock names the base image's sha256 and the imported root's packages; --lock with another base image is exit 2 naming base.image", async () => {
    const lock = parseLock(await readFile(s.out("out-import/kiln.lock"), "utf8"), "kiln.lock");
    const base = (await fileDigests(path.join(outMin(), "squashfs"))).sha256;
    assert.deepEqual(lock.base, { image: { file: "out-min/squashfs", sha256: base } });
    // The imported root is minimal's sealed root: the same packages, read from its dpkg database.
    const minimalLock = parseLock(await readFile(path.join(outMin(), "kiln.lock"), "utf8"), "kiln.lock");
    const packages = (l: KilnLock) => l.root.map((p) => `${p.name} ${p.version} ${p.arch}`).sort();
    assert.ok(lock.root.some((p) => p.name === "systemd"), "the imported root's packages are listed");
    assert.deepEqual(packages(lock), packages(minimalLock));
    assert.ok(lock.flavors.generic?.some((p) => p.name === "linux-image-amd64"), "the flavor the import adds");

    // The same recipe text over another image (the base changed since the lock was made): refused before any stage.
    const other = s.out("other.squashfs");
    await writeFile(other, Buffer.concat([await readFile(path.join(outMin(), "squashfs")), Buffer.alloc(4096)]));
    const recipe = s.out("import-other.yaml");
    await writeFile(recipe, (await readFile(s.out("import.yaml"), "utf8")).replace("./out-min/squashfs", "./other.squashfs"));
    const r = await runKiln(["build", recipe, "--lock", s.out("out-import/kiln.lock"), "--out", s.out("out-import-other"), "--cache-dir", s.cache, "--json"]);
    assert.equal(r.code, 2, r.stderr + r.stdout.slice(-2000));
    const otherSha = (await fileDigests(other)).sha256;
    assert.match(r.stderr, new RegExp(`base\\.image: the recipe's image other\\.squashfs has sha256 ${otherSha}, the lock pins ${base} \\(out-min/squashfs\\)`));
    assert.doesNotMatch(r.stdout, /"type":"stage-start"/, "no stage ran");
  });

  /** minimal.yaml plus a second flavor: the same root (cached by the tests above), two kernel layers. */
  const twoFlavors = async () => {
    const recipe = s.out("two-flavors.yaml");
    const minimalText = await readFile(path.join(REPO, "examples/minimal.yaml"), "utf8");
    await writeFile(recipe, minimalText.replace("    package: linux-image-amd64\n", "    package: linux-image-amd64\n  - flavor: cloud\n    package: linux-image-cloud-amd64\n"));
    return recipe;
  };
  const FLAVORS = ["kernel:cloud", "kernel:generic"];

  for (const sig of ["SIGTERM", "SIGKILL"] as const) {
    test(`${sig} while two kernel flavors install at once leaves no mount, loop device or process${sig === "SIGKILL" ? " after the next run" : ""}`, async () => {
      const run = startKiln(["build", await twoFlavors(), "--out", s.out(`out-${sig}`), "--cache-dir", s.cache, "--from", "kernel:generic", "--jobs", "2", "--no-verify", "--json", "-v"]);
      // Wait until both kernel stages are inside their chroots, installing (mounts and children exist).
      let stdout = "";
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error("the two kernel stages never installed at once")), 240_000);
        run.onStdout((all) => {
          stdout = all;
          const installing = new Set(events(all).filter((e) => e.type === "log" && FLAVORS.includes(e.name as string) && String(e.line).includes("apt-get")).map((e) => e.name));
          if (installing.size === 2) {
            clearTimeout(timer);
            resolve();
          }
        });
        void run.done.then(() => reject(new Error("build ended before it could be killed")));
      });
      // Give apt a moment to be mid-install.
      await new Promise((r) => setTimeout(r, 3000));
      const ev = events(stdout);
      const second = ev.find((e) => e.type === "stage-start" && FLAVORS.includes(e.name as string) && (e.running as string[]).some((n) => FLAVORS.includes(n)));
      assert.ok(second, "the second flavor started while the first ran");
      assert.ok(!ev.some((e) => e.type === "stage-end" && FLAVORS.includes(e.name as string)), "neither flavor had ended: both run now");
      const mounts = await mountsUnder(s.cache);
      for (const f of ["kernel-generic", "kernel-cloud"]) assert.ok(mounts.some((m) => m.includes(`/mnt/${f}`)), `${f} had mounts to leak: ${mounts.join(" ")}`);
      assert.ok(processesUnder(s.cache).length >= 2, "both stages had processes to leak");
      run.child.kill(sig);
      const r = await run.done;
      if (sig === "SIGTERM") {
        assert.equal(r.code, 143, r.stderr);
        assert.match(r.stderr, /SIGTERM: stopping/);
      } else {
        assert.equal(r.signal, "SIGKILL");
        await runKiln(["cache", "ls", "--cache-dir", s.cache]); // the next kiln run sweeps
      }
      assert.deepEqual(await mountsUnder(s.cache), []);
      assert.deepEqual(loopsUnder(s.cache), []);
      assert.deepEqual(processesUnder(s.cache), []);
      assert.deepEqual(await readdir(path.join(s.cache, "work")), [], "work dirs are gone");
      await stat(path.join(REPO, "package.json")); // the checkout is untouched, trivially
    });
  }

  test("two flavors build side by side within --jobs 2; result.json lists stages and artifacts in plan order", async () => {
    const r = await runKiln(["build", await twoFlavors(), "--out", s.out("out-two"), "--cache-dir", s.cache, "--from", "kernel:generic", "--jobs", "2", "--no-verify", "--json"]);
    assert.equal(r.code, 0, r.stderr + r.stdout.slice(-3000));
    const ev = events(r.stdout);
    assert.equal(ev.find((e) => e.type === "plan")?.jobs, 2);
    const starts = ev.filter((e) => e.type === "stage-start");
    assert.deepEqual(starts.find((e) => e.name === "kernel:cloud")?.running, ["kernel:generic"], "cloud started beside generic");
    for (const e of starts) assert.ok((e.running as string[]).length <= 1, `at most 2 at once: ${e.name} started beside ${String(e.running)}`);
    const ends = Object.fromEntries(ev.filter((e) => e.type === "stage-end").map((e) => [e.name, e.ranWith as string[]]));
    assert.ok(ends["kernel:generic"]!.includes("kernel:cloud") && ends["kernel:cloud"]!.includes("kernel:generic"), JSON.stringify(ends));
    for (const e of ev.filter((x) => x.type === "stage-start" || x.type === "stage-end")) assert.ok(!Number.isNaN(Date.parse(e.at as string)), "each carries its time");

    const outTwo = JSON.parse(await readFile(path.join(s.out("out-two"), "result.json"), "utf8")) as BuildResult;
    assert.deepEqual(outTwo.stages.map((x) => [x.name, x.cached]), [
      ["bootstrap", true], ["packages", true], ["seal", true], ["kernel:generic", false], ["kernel:cloud", false], ["squashfs", false], ["manifest", false],
    ]);
    assert.deepEqual(outTwo.artifacts.map((a) => a.path), [
      "squashfs", "squashfs.manifest",
      "generic/boot-kernel", "generic/boot-initrd", "generic/boot-params",
      "cloud/boot-kernel", "cloud/boot-initrd", "cloud/boot-params",
      // The package lock (docs/lock.md), then the attest step's files over every artifact above (docs/attest.md).
      "kiln.lock",
      "sbom.spdx.json", "sbom.cdx.json", "provenance.json", "SHA256SUMS",
    ]);
    for (const a of outTwo.artifacts) assert.equal((await fileDigests(path.join(s.out("out-two"), a.path))).sha256, a.sha256, a.path);
    assert.match(await readFile(path.join(s.out("out-two"), "logs/kernel-cloud.log"), "utf8"), /linux-image-cloud-amd64/);
    assert.doesNotMatch(await readFile(path.join(s.out("out-two"), "logs/kernel-cloud.log"), "utf8"), /linux-image-amd64[^-]/, "one stage per log");
  });

  test("--jobs 1 runs one stage at a time", async () => {
    const r = await runKiln(["build", await twoFlavors(), "--out", s.out("out-two"), "--cache-dir", s.cache, "--from", "squashfs", "--jobs", "1", "--no-verify", "--json"]);
    assert.equal(r.code, 0, r.stderr + r.stdout.slice(-3000));
    const ev = events(r.stdout);
    // The plan's stages; the attest step after them runs alone anyway (checked below with the rest).
    const built = ev.filter((e) => e.type === "stage-end" && e.cached === false && e.name !== "attest");
    assert.deepEqual(built.map((e) => e.name), ["squashfs", "manifest"]);
    for (const e of ev.filter((x) => x.type === "stage-end")) assert.deepEqual(e.ranWith, [], `${e.name as string} ran alone`);
  });
});
