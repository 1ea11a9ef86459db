import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { chmod, mkdir, mkdtemp, rename, rm, symlink, utimes, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileDigest } from "../../src/cache/key.js";
import { treeDigest } from "../../src/cache/tree-digest.js";
import { playbookFolderDigest } from "../../src/stages/ansible.js";

const sha = (t: string) => createHash("sha256").update(t).digest("hex");

async function withTree(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "kiln-tree-"));
  try {
    await mkdir(path.join(dir, "scripts/init-bottom"), { recursive: true });
    await writeFile(path.join(dir, "hook"), "#!/bin/sh\n");
    await chmod(path.join(dir, "hook"), 0o755);
    await writeFile(path.join(dir, "scripts/init-bottom/kiln"), "mount\n");
    await chmod(path.join(dir, "scripts/init-bottom/kiln"), 0o644);
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test("the tree digest keeps the format kernel layer keys always had: `path mode sha256` per file, sorted, joined by newlines", async () => {
  await withTree(async (dir) => {
    const expected = `sha256:${sha(`hook 755 ${sha("#!/bin/sh\n")}\nscripts/init-bottom/kiln 644 ${sha("mount\n")}`)}`;
    assert.equal(await treeDigest(dir), expected);
  });
});

test("the tree digest changes with a file's content, mode or name, and not with its timestamps", async () => {
  await withTree(async (dir) => {
    const before = await treeDigest(dir);
    await utimes(path.join(dir, "hook"), new Date(0), new Date(0));
    assert.equal(await treeDigest(dir), before, "timestamps");
    await chmod(path.join(dir, "hook"), 0o644);
    const chmodded = await treeDigest(dir);
    assert.notEqual(chmodded, before, "mode");
    await rename(path.join(dir, "hook"), path.join(dir, "hook2"));
    const renamed = await treeDigest(dir);
    assert.notEqual(renamed, chmodded, "name");
    await writeFile(path.join(dir, "scripts/init-bottom/kiln"), "mount -o ro\n");
    assert.notEqual(await treeDigest(dir), renamed, "content");
  });
});

test("a walk limited to some names skips missing ones, follows symlinks and ends on a link loop", async () => {
  await withTree(async (dir) => {
    await symlink("..", path.join(dir, "scripts/loop"));
    const all = await treeDigest(dir, ["hook", "scripts", "absent"]);
    assert.match(all, /^sha256:[0-9a-f]{64}$/);
    assert.notEqual(await treeDigest(dir, ["hook"]), all);
    assert.equal(await treeDigest(dir, ["absent"]), `sha256:${sha("")}`);
  });
});

test("the playbook digest covers the folders beside the playbook, not the playbook itself or unrelated files", async () => {
  await withTree(async (dir) => {
    await mkdir(path.join(dir, "roles/web/tasks"), { recursive: true });
    await writeFile(path.join(dir, "roles/web/tasks/main.yml"), "- ping:\n");
    await writeFile(path.join(dir, "site.yml"), "- hosts: all\n");
    const playbook = path.join(dir, "site.yml");
    const before = await playbookFolderDigest(playbook);
    await writeFile(path.join(dir, "notes.txt"), "x\n");
    assert.equal(await playbookFolderDigest(playbook), before);
    await writeFile(path.join(dir, "roles/web/tasks/main.yml"), "- ping: {}\n");
    assert.notEqual(await playbookFolderDigest(playbook), before);
  });
});

test("the file digest is the streamed sha256 (or md5) of the content in hex", async () => {
  await withTree(async (dir) => {
    assert.equal(await fileDigest(path.join(dir, "hook")), sha("#!/bin/sh\n"));
    assert.equal(await fileDigest(path.join(dir, "hook"), "md5"), createHash("md5").update("#!/bin/sh\n").digest("hex"));
  });
});
