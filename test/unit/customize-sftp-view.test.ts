import { test } from "node:test";
import assert from "node:assert/strict";
import { locate, longname, modeString } from "../../src/customize/sftp-server.js";

test("in a jail SFTP paths are image paths; relative ones start at the home", () => {
  const jail = { mountPoint: "/", home: "/root" };
  assert.deepEqual(locate(jail, "/etc/passwd"), { kind: "image", path: "/etc/passwd" });
  assert.deepEqual(locate(jail, "x.txt"), { kind: "image", path: "/root/x.txt" });
  // `..` is left for RootFs, which resolves it physically and stops at the image's /.
  assert.deepEqual(locate(jail, "../../../etc"), { kind: "image", path: "/root/../../../etc" });
});

test("not jailed, the image is at /mnt/image and nothing else of the host is served", () => {
  const plain = { mountPoint: "/mnt/image", home: "/mnt/image" };
  assert.deepEqual(locate(plain, "/mnt/image"), { kind: "image", path: "/" });
  assert.deepEqual(locate(plain, "/mnt/image/etc/hosts"), { kind: "image", path: "/etc/hosts" });
  assert.deepEqual(locate(plain, "etc/hosts"), { kind: "image", path: "/etc/hosts" });
  assert.deepEqual(locate(plain, "/mnt/image/"), { kind: "image", path: "/" });
  assert.deepEqual(locate(plain, "/"), { kind: "virtual", path: "/", children: ["mnt"] });
  assert.deepEqual(locate(plain, "/mnt/"), { kind: "virtual", path: "/mnt", children: ["image"] });
  assert.deepEqual(locate(plain, "/etc/passwd"), { kind: "none", path: "/etc/passwd" });
  assert.deepEqual(locate(plain, "../../etc/passwd"), { kind: "none", path: "/etc/passwd" });
  assert.deepEqual(locate(plain, "/mnt/image/../../etc"), { kind: "none", path: "/etc" });
  assert.deepEqual(locate(plain, "/mnt/imagex"), { kind: "none", path: "/mnt/imagex" });
});

test("long names read like ls -l", () => {
  assert.equal(modeString(0o100644), "-rw-r--r--");
  assert.equal(modeString(0o40755), "drwxr-xr-x");
  assert.equal(modeString(0o104755), "-rwsr-xr-x");
  assert.equal(modeString(0o41777), "drwxrwxrwt");
  assert.equal(modeString(0o120777), "lrwxrwxrwx");
  const t = Date.UTC(2026, 0, 2, 3, 4) / 1000;
  const line = longname("motd", { mode: 0o100644, uid: 0, gid: 0, size: 12, atime: t, mtime: t }, t * 1000);
  assert.match(line, /^-rw-r--r-- +1 0 +0 +12 Jan +2 \d\d:\d\d motd$/);
  assert.match(longname("old", { mode: 0o100644, uid: 0, gid: 0, size: 1, atime: 0, mtime: 0 }, t * 1000), / 19(69|70) old$/);
});
