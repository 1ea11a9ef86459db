import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, mkdir, symlink, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { resolveInRoot } from "../../src/host/root-path.js";

test("image symlinks resolve inside the image root, never onto the host", async () => {
  const root = await mkdtemp(path.join(os.tmpdir(), "kiln-root-"));
  try {
    await mkdir(path.join(root, "etc"), { recursive: true });
    await mkdir(path.join(root, "run"), { recursive: true });
    await symlink("/run/motd", path.join(root, "etc/motd")); // absolute: the image's /run
    await symlink("../../../../../etc", path.join(root, "escape")); // relative, climbing past /
    await symlink("/etc/../../../..", path.join(root, "abs-escape"));
    await symlink("loop2", path.join(root, "loop1"));
    await symlink("loop1", path.join(root, "loop2"));

    assert.equal(await resolveInRoot(root, "/etc/motd"), path.join(root, "run/motd"));
    assert.equal(await resolveInRoot(root, "/etc/motd", false), path.join(root, "etc/motd"));
    assert.equal(await resolveInRoot(root, "/escape/passwd"), path.join(root, "etc/passwd"));
    assert.equal(await resolveInRoot(root, "/abs-escape/shadow"), path.join(root, "shadow"));
    assert.equal(await resolveInRoot(root, "/../../etc/hosts"), path.join(root, "etc/hosts"));
    assert.equal(await resolveInRoot(root, "/new/dir/file"), path.join(root, "new/dir/file"));
    await assert.rejects(resolveInRoot(root, "/loop1/x"), /too many symlinks/);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
