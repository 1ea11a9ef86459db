/**
 * `kiln diff A B`: out dirs made here with real squashfs files (mksquashfs), and image records
 * of a running service (PGlite, file store) holding the same files; the real CLI compares them.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFile, execFileSync, spawnSync } from "node:child_process";
import { createHash, randomUUID } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { BOOT_IMAGES_BUCKET } from "../../src/catalog/objects.js";
import type { ImageRecord } from "../../src/catalog/records.js";
import type { SnapshotDiff } from "../../src/diff/compare.js";
import { parseSquashfsListing } from "../../src/diff/compare.js";
import { READER, startTestService, type TestService } from "../helpers/service.js";

const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../src/cli/main.js");
let dir: string;

/** An out dir as kiln build leaves it: a squashfs of `tree`, its package list, one flavor's kernel. */
async function outDir(name: string, tree: Record<string, string>, packages: string, kernelVersion: string): Promise<string> {
  const out = path.join(dir, name);
  const root = path.join(dir, `${name}-root`);
  for (const [p, content] of Object.entries(tree)) {
    await mkdir(path.dirname(path.join(root, p)), { recursive: true });
    if (content.startsWith("->")) await symlink(content.slice(2), path.join(root, p));
    else await writeFile(path.join(root, p), content);
  }
  await mkdir(path.join(out, "generic"), { recursive: true });
  execFileSync("mksquashfs", [root, path.join(out, "squashfs"), "-quiet", "-noappend", "-no-progress"]);
  await writeFile(path.join(out, "squashfs.manifest"), packages);
  await writeFile(path.join(out, "generic", "boot-kernel"), `kernel ${kernelVersion}`);
  const art = async (p: string, ftype: string, extra: Record<string, string> = {}) => {
    const body = await readFile(path.join(out, p));
    return { name: path.basename(p), path: p, type: "x", ftype, sha256: createHash("sha256").update(body).digest("hex"), md5: createHash("md5").update(body).digest("hex"), size: body.length, ...extra };
  };
  const artifacts = [
    await art("squashfs", "squashfs"),
    await art("squashfs.manifest", "manifest"),
    await art("generic/boot-kernel", "boot-kernel", { flavor: "generic", kpackage: "linux-image-amd64", kernelVersion }),
  ];
  await writeFile(path.join(out, "result.json"), JSON.stringify({ artifacts, stages: [], verify: [] }));
  return out;
}

function kilnDiff(...args: string[]): { code: number | null; diff: SnapshotDiff; stderr: string } {
  const r = spawnSync("node", [CLI, "diff", ...args, "--json"], { encoding: "utf8" });
  return { code: r.status, diff: r.stdout ? (JSON.parse(r.stdout) as SnapshotDiff) : (undefined as unknown as SnapshotDiff), stderr: r.stderr };
}

let a: string;
let b: string;

before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "kiln-diff-"));
  a = await outDir("a", { "etc/motd": "hello\n", "usr/bin/old": "x", "bin": "->usr/bin", "etc/with space": "1" }, "bash\t5.2.15-2+b2\nold-tool\t1.0\n", "6.1.0-25-amd64");
  b = await outDir("b", { "etc/motd": "hello, world\n", "usr/bin/new": "y", "bin": "->usr/sbin", "etc/with space": "1" }, "bash\t5.2.15-2+b7\nhello\t2.10-3\nnew-tool\t2.0\n", "6.1.0-26-amd64");
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

test("diff: a squashfs listing is read per path, with spaces, link targets and devices, and no root entry", () => {
  const listing = [
    "drwxr-xr-x 0/0                      35 2026-12-03 14:35 ",
    "lrwxrwxrwx 0/0                       6 2026-12-03 14:35 /d/link -> ../etc",
    "crw-r--r-- 0/0                   1,  3 2026-12-03 14:35 /d/null",
    "-rw-r--r-- 0/0                       3 2026-12-03 14:35 /etc/with space",
  ].join("\n");
  const files = parseSquashfsListing(listing);
  assert.deepEqual([...files.keys()], ["/d/link", "/d/null", "/etc/with space"]);
  assert.equal(files.get("/d/link")!.target, "../etc");
  assert.equal(files.get("/d/null")!.size, "1,3");
});

test("diff: two out dirs differ in packages, kernel, sizes and files; exit 1", () => {
  const r = kilnDiff(a, b);
  assert.equal(r.code, 1, r.stderr);
  const d = r.diff;
  assert.deepEqual(d.packages, {
    added: [{ name: "hello", version: "2.10-3" }, { name: "new-tool", version: "2.0" }],
    removed: [{ name: "old-tool", version: "1.0" }],
    changed: [{ name: "bash", from: "5.2.15-2+b2", to: "5.2.15-2+b7" }],
  });
  assert.deepEqual(d.kernels, [{ flavor: "generic", a: "6.1.0-25-amd64", b: "6.1.0-26-amd64", kpackage: "linux-image-amd64" }]);
  assert.ok(d.artifacts.some((x) => x.artifact === "squashfs.manifest"));
  assert.deepEqual(d.files!.added, ["/usr/bin/new"]);
  assert.deepEqual(d.files!.removed, ["/usr/bin/old"]);
  assert.deepEqual(d.files!.changed, [{ path: "/bin", what: ["target usr/bin → usr/sbin"] }, { path: "/etc/motd", what: ["size 6 → 13"] }]);
  assert.equal(d.identical, false);
});

test("diff: an out dir against itself is identical; exit 0 and the text says so", () => {
  const r = spawnSync("node", [CLI, "diff", a, a], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /packages: 0 added, 0 removed, 0 changed\nkernels: the same\nartifacts: the same sizes\nfiles: 0 added, 0 removed, 0 changed\nno differences/);
});

test("diff: something that is neither an out dir nor an image id is exit 2, naming it", () => {
  const r = spawnSync("node", [CLI, "diff", a, path.join(dir, "missing")], { encoding: "utf8" });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /missing: neither an out dir nor an image id/);
});

let s: TestService;
let url: string;

/** Puts an out dir's files into the store as a job's publish step does, and its image record. */
async function imageOf(out: string, kernelVersion: string): Promise<string> {
  const id = randomUUID();
  const artifacts: Array<Record<string, unknown>> = [];
  for (const [file, key, type, flavor] of [
    ["squashfs", "rootfs", "application/vnd.cray.image.rootfs.squashfs", undefined],
    ["generic/boot-kernel", "kernel", "application/vnd.cray.image.kernel", "generic"],
    ["squashfs.manifest", "rootfs.manifest", "text/tab-separated-values", undefined],
  ] as const) {
    const body = await readFile(path.join(out, file));
    const md5 = createHash("md5").update(body).digest("hex");
    const info = await s.store.put(BOOT_IMAGES_BUCKET, `${id}/${key}`, body, { contentType: type, size: body.length, metadata: { md5sum: md5 } });
    artifacts.push({ link: { etag: info.etag, path: `s3://${BOOT_IMAGES_BUCKET}/${id}/${key}`, type: "s3" }, md5, type, ...(flavor ? { flavor } : {}) });
  }
  const m = await s.store.put(BOOT_IMAGES_BUCKET, `${id}/manifest.json`, JSON.stringify({ artifacts, created: "2026-12-03 12:00:00", version: "1.0" }), { contentType: "application/json" });
  const rec: ImageRecord = {
    id, created: "2026-12-03T12:00:00.000000", name: "web", arch: "x86_64", metadata: {},
    link: { path: `s3://${BOOT_IMAGES_BUCKET}/${id}/manifest.json`, etag: m.etag, type: "s3" },
    kiln: { job_id: randomUUID(), source_image_id: null, flavors: [{ flavor: "generic", kpackage: "linux-image-amd64", kernel_version: kernelVersion }], package_diff: null, label: "candidate" },
  };
  await s.catalog.insert("images", rec);
  return id;
}

test("diff: two image ids of a running service, with --files, give the same comparison as their out dirs", async () => {
  s = await startTestService();
  try {
    await s.app.listen({ host: "127.0.0.1", port: 0 });
    url = `http://127.0.0.1:${(s.app.server.address() as { port: number }).port}`;
    const [ia, ib] = [await imageOf(a, "6.1.0-25-amd64"), await imageOf(b, "6.1.0-26-amd64")];
    // Not spawnSync: the service answering the CLI runs in this process.
    const r = await kilnAsync([CLI, "diff", ia, ib, "--files", "--json", "--url", url, "--token", READER]);
    assert.equal(r.code, 1, r.stderr);
    const d = JSON.parse(r.stdout) as SnapshotDiff;
    const local = kilnDiff(a, b).diff;
    assert.deepEqual(d.packages, local.packages);
    assert.deepEqual(d.kernels, local.kernels);
    assert.deepEqual(d.files, local.files);
    assert.ok(d.artifacts.some((x) => x.artifact === "rootfs.manifest"), "sizes by object key");
    const noFiles = await kilnAsync([CLI, "diff", ia, ib, "--url", url, "--token", READER]);
    assert.match(noFiles.stdout, /files: not compared \(give --files/);
  } finally {
    await s.close();
  }
});

function kilnAsync(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile("node", args, { encoding: "utf8" }, (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }));
  });
}
