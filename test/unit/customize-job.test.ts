import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { execFileSync } from "node:child_process";
import { changedInitramfsInputs } from "../../src/jobs/customize-job.js";
import { diffPackages, formatPackageDiff, parsePackageList } from "../../src/jobs/package-diff.js";

test("package lists parse as dpkg-query --show prints them", () => {
  const m = parsePackageList("bash\t5.2.15-2+b2\nlibc6:amd64\t2.36-9+deb12u4\n\nhello\t\n");
  assert.deepEqual([...m], [["bash", "5.2.15-2+b2"], ["libc6:amd64", "2.36-9+deb12u4"], ["hello", ""]]);
});

test("the package diff: added, removed and changed, sorted by name", () => {
  const before = parsePackageList("bash\t5.2\ncurl\t7.88\nzsh\t5.9\nvim\t9.0\n");
  const after = parsePackageList("bash\t5.2\ncurl\t7.89\nhello\t2.10\nacl\t2.3\nvim\t9.0\n");
  const d = diffPackages(before, after);
  assert.deepEqual(d, {
    added: [{ name: "acl", version: "2.3" }, { name: "hello", version: "2.10" }],
    removed: [{ name: "zsh", version: "5.9" }],
    changed: [{ name: "curl", from: "7.88", to: "7.89" }],
  });
  assert.deepEqual(formatPackageDiff(d), ["+ acl 2.3", "+ hello 2.10", "- zsh 5.9", "~ curl 7.88 → 7.89"]);
  assert.deepEqual(diffPackages(before, before), { added: [], removed: [], changed: [] });
});

test("what a session changed that goes into the initramfs: modules, firmware, initramfs-tools config, whiteouts", async () => {
  const upper = await mkdtemp(path.join(os.tmpdir(), "kiln-upper-"));
  try {
    await mkdir(path.join(upper, "etc/ssh"), { recursive: true });
    await writeFile(path.join(upper, "etc/ssh/sshd_config"), "x");
    await mkdir(path.join(upper, "usr/lib"), { recursive: true });
    await mkdir(path.join(upper, "boot"));
    assert.deepEqual(await changedInitramfsInputs(upper), [], "an unrelated change and empty copied-up folders are not");

    await mkdir(path.join(upper, "usr/lib/modules/6.1.0-28-amd64/updates"), { recursive: true });
    await writeFile(path.join(upper, "usr/lib/modules/6.1.0-28-amd64/updates/x.ko"), "");
    await mkdir(path.join(upper, "etc/initramfs-tools"), { recursive: true });
    await writeFile(path.join(upper, "etc/initramfs-tools/modules"), "x\n");
    await writeFile(path.join(upper, "etc/modules"), "x\n");
    // overlayfs records a removed file as a 0:0 character device
    execFileSync("mknod", [path.join(upper, "etc/initramfs-tools/gone"), "c", "0", "0"]);
    const found = await changedInitramfsInputs(upper);
    for (const p of ["usr/lib/modules/6.1.0-28-amd64/updates/x.ko", "etc/initramfs-tools/modules", "etc/initramfs-tools/gone", "etc/modules"]) assert.ok(found.includes(p), `${p} in ${found.join(", ")}`);
    assert.ok(!found.some((p) => p.startsWith("etc/ssh")));
  } finally {
    await rm(upper, { recursive: true, force: true });
  }
});
