// Per-stage diff tests, for real (root): each test runs ONE layer stage as the engine runs it (on
// an overlay whose upper dir becomes the layer) and compares what it added, changed and removed
// with the list in test/integration/stage-diff/<name>.expected (format: test/helpers/stage-diff.ts).
//
// files and seal run on a tiny hand-made root, so every branch they have is visible in a short
// list; seal, config and kernel also run on the bookworm minbase bootstrap layer that other suites
// share (sharedLayers: built once per test run, not again here), kernel on the sealed root as in a
// build.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { chmod, mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { config } from "../../src/stages/config.js";
import { files } from "../../src/stages/files.js";
import { kernel } from "../../src/stages/kernel.js";
import { seal } from "../../src/stages/seal.js";
import { loopsUnder, mountsUnder, processesUnder } from "../helpers/host.js";
import { REPO, runKiln, scratch } from "../helpers/kiln.js";
import { assertChanges, runStageOnRoot } from "../helpers/stage-diff.js";

const EXPECTED = path.join(REPO, "test/integration/stage-diff");
const expected = (name: string) => path.join(EXPECTED, `${name}.expected`);

/** The bootstrap recipe of test/integration/apt-archives.test.ts: same key, so one shared layer. */
const RECIPE = `apiVersion: kiln/v1
name: apt-archives-test
base: { debian: bookworm, variant: minbase }
outputs: [manifest]
verify: none
`;

let s: Awaited<ReturnType<typeof scratch>>;
let aptArchives: string;

before(async () => {
  s = await scratch("kiln-stage-diff-", { sharedLayers: true });
  aptArchives = path.join(s.cache, "apt", "archives");
});

after(async () => {
  assert.deepEqual(await mountsUnder(s.dir), [], "no mounts left");
  assert.deepEqual(loopsUnder(s.dir), [], "no loop devices left");
  assert.deepEqual(processesUnder(s.dir), [], "no processes left");
  await rm(s.dir, { recursive: true, force: true });
});

/** A root of a few files: the accounts files resolve owners, the rest is what seal must clean. */
async function tinyRoot(dir: string): Promise<string> {
  const put = async (p: string, content: string, mode = 0o644) => {
    await mkdir(path.dirname(path.join(dir, p)), { recursive: true });
    await writeFile(path.join(dir, p), content);
    await chmod(path.join(dir, p), mode);
  };
  await put("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\n");
  await put("etc/group", "root:x:0:\nwww-data:x:33:\n");
  await put("etc/motd", "old motd\n");
  await put("etc/machine-id", "0123456789abcdef0123456789abcdef\n", 0o444);
  await put("etc/ssh/ssh_host_ed25519_key", "PRIVATE\n", 0o600);
  await put("etc/ssh/ssh_host_ed25519_key.pub", "ssh-ed25519 AAAA host\n");
  await put("etc/ssh/sshd_config", "# stays\n");
  await put("usr/sbin/sshd", "", 0o755);
  await put("var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_InRelease", "lists\n");
  await mkdir(path.join(dir, "var/lib/apt/lists/partial"), { recursive: true });
  await put("var/cache/apt/pkgcache.bin", "cache\n");
  await put("var/cache/apt/archives/hello_2.10-3_amd64.deb", "deb\n");
  await put("tmp/build-junk", "junk\n");
  await put("etc/resolv.conf", (await readFile("/etc/resolv.conf", "utf8").catch(() => "")) || "nameserver 192.0.2.1\n");
  await put("etc/hostname", os.hostname() + "\n");
  return dir;
}

describe("one stage on a tiny root", () => {
  test("files: writes new files and replaces one, with mode and owner", async () => {
    const root = await tinyRoot(path.join(s.dir, "tiny-files"));
    const run = await runStageOnRoot(files, {
      files: [
        { path: "/etc/motd", content: "Welcome\n", mode: "0644", owner: "root" },
        { path: "/srv/app/config.ini", content: "[app]\n", mode: "0640", owner: "www-data:www-data" },
        { path: "/etc/ssh/sshd_config", content: "# stays\n", mode: "0644", owner: "root" },
      ],
    }, [root], path.join(s.dir, "run-files"), { aptArchives });
    await assertChanges(run, expected("files"));
    // The list says which paths; the bytes and owner of the new file are checked here.
    const upper = path.join(s.dir, "run-files/upper");
    assert.equal(await readFile(path.join(upper, "srv/app/config.ini"), "utf8"), "[app]\n");
    assert.match(run.changes.find((c) => c.path === "/etc/motd")!.detail!, /content/);
  });

  test("seal: empties the machine identity, removes host keys, apt lists, caches and /tmp", async () => {
    const root = await tinyRoot(path.join(s.dir, "tiny-seal"));
    const run = await runStageOnRoot(seal, {}, [root], path.join(s.dir, "run-seal"), { aptArchives });
    await assertChanges(run, expected("seal-tiny"));
    const upper = path.join(s.dir, "run-seal/upper");
    assert.equal(await readFile(path.join(upper, "etc/machine-id"), "utf8"), "");
    assert.equal(await readFile(path.join(upper, "etc/hostname"), "utf8"), "localhost\n");
  });
});

describe("one stage on the shared bookworm minbase root", () => {
  let bootstrap: string;
  before(async () => {
    const recipe = path.join(s.dir, "recipe.yaml");
    await writeFile(recipe, RECIPE);
    const plan = await runKiln(["plan", recipe, "--json", "--cache-dir", s.cache]);
    assert.equal(plan.code, 0, plan.stderr);
    const b = (JSON.parse(plan.stdout) as { stages: Array<{ kind: string; key: string; cached: boolean }> }).stages.find((x) => x.kind === "bootstrap")!;
    if (!b.cached) {
      const r = await runKiln(["build", recipe, "--cache-dir", s.cache, "--out", s.out("out"), "--no-verify"]);
      assert.equal(r.code, 0, r.stderr + r.stdout.slice(-3000));
    }
    bootstrap = path.join(s.cache, "layers", b.key, "tree");
  });

  test("seal: on a real bootstrap, only writes an empty machine id", async () => {
    const run = await runStageOnRoot(seal, {}, [bootstrap], path.join(s.dir, "run-seal-real"), { aptArchives });
    await assertChanges(run, expected("seal-bootstrap"));
  });

  test("config: writes the profile's files, adds the group and user with keys and sudo, applies permissions", async () => {
    const run = await runStageOnRoot(config, {
      sysctl: [["vm.swappiness", "10"]],
      limits: [{ domain: "*", type: "soft", item: "nofile", value: 65536 }],
      modules: ["br_netfilter"],
      blacklist: ["floppy"],
      permissions: [{ path: "/srv/data", directory: true, mode: "0750", owner: "ops:ops" }],
      groups: [{ name: "ops", gid: 2000, system: false }],
      users: [{ name: "ops", groups: ["ops"], shell: "/bin/bash", sudo: true, system: false, sshAuthorizedKeys: ["ssh-ed25519 AAAAC3Nza ops@example"] }],
      units: { enable: [], disable: [], mask: [] },
    }, [bootstrap], path.join(s.dir, "run-config"), { aptArchives });
    await assertChanges(run, expected("config"));
    const upper = path.join(s.dir, "run-config/upper");
    assert.equal(await readFile(path.join(upper, "etc/sysctl.d/90-kiln.conf"), "utf8"), "# Written by Kiln from the recipe's config; rebuild the image to change it.\nvm.swappiness = 10\n");
    assert.match(await readFile(path.join(upper, "etc/passwd"), "utf8"), /^ops:x:\d+:2000::\/home\/ops:\/bin\/bash$/m);
  });

  test("kernel: on the sealed root, installs the flavor, the diskless hook and its initramfs, and exports both", async () => {
    const sealed = await runStageOnRoot(seal, {}, [bootstrap], path.join(s.dir, "run-seal-for-kernel"), { aptArchives });
    const run = await runStageOnRoot(kernel, { flavor: "generic", package: "linux-image-amd64" },
      [path.join(s.dir, "run-seal-for-kernel/upper"), bootstrap], path.join(s.dir, "run-kernel"), { aptArchives });
    assert.ok(sealed.changes.length > 0);
    await assertChanges(run, expected("kernel"));
    assert.deepEqual((await readdir(run.outputs)).sort(), ["boot-initrd", "boot-kernel"]);
    assert.match(String(run.facts.kernelVersion), /^\d+\.\d+\.\d+-\d+-amd64$/);
  });
});
