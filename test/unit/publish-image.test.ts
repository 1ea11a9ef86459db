/**
 * publishImage (a job's last step): every uploaded artifact carries the sha256 the build computed
 * (out/result.json) as object metadata beside IMS' md5sum, so a simplestreams item can give it
 * without reading the object back. Real catalog (PGlite) and file store; the out dir is made here.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Catalog } from "../../src/catalog/catalog.js";
import { BOOT_IMAGES_BUCKET, BUCKETS } from "../../src/catalog/objects.js";
import { JobLog } from "../../src/jobs/job-log.js";
import { publishImage } from "../../src/jobs/publish.js";
import { openStore } from "../../src/store/open-store.js";

test("uploaded artifacts carry their sha256 from result.json as object metadata; the package list is uploaded and listed after the IMS artifacts", async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), "kiln-publish-"));
  const catalog = await Catalog.open(undefined, path.join(dir, "data"));
  const store = await openStore(`file://${path.join(dir, "objects")}`);
  try {
    for (const b of BUCKETS) await store.ensureBucket(b);
    const out = path.join(dir, "out");
    await mkdir(path.join(out, "amd64"), { recursive: true });
    const files = [
      { path: "rootfs.squashfs", type: "application/vnd.cray.image.rootfs.squashfs", body: "root" },
      { path: "amd64/vmlinuz", type: "application/vnd.cray.image.kernel", body: "kernel", flavor: "amd64" },
      { path: "amd64/initrd", type: "application/vnd.cray.image.initrd", body: "initrd", flavor: "amd64" },
    ];
    const digest = (alg: string, t: string) => createHash(alg).update(t).digest("hex");
    for (const f of files) await writeFile(path.join(out, f.path), f.body);
    await writeFile(path.join(out, "manifest.json"), JSON.stringify({ version: "1.0", created: "2026-12-03 11:00:00", artifacts: files.map((f) => ({ type: f.type, md5: digest("md5", f.body), link: { type: "file", path: f.path }, ...(f.flavor ? { flavor: f.flavor } : {}) })) }));
    // The package list is in result.json only: IMS' manifest.json does not carry it.
    const packages = { path: "squashfs.manifest", type: "text/tab-separated-values", body: "bash\t5.2.15-2+b2\n" };
    await writeFile(path.join(out, packages.path), packages.body);
    await writeFile(path.join(out, "result.json"), JSON.stringify({ artifacts: [...files, packages].map((f) => ({ name: f.path, path: f.path, type: f.type, ftype: "x", sha256: digest("sha256", f.body), md5: digest("md5", f.body), size: f.body.length })) }));
    const image = await publishImage(catalog, store, { outDir: out, name: "web", arch: "x86_64", jobId: "00000000-0000-4000-8000-000000000001" }, new JobLog(catalog, "00000000-0000-4000-8000-000000000001"));
    for (const [key, body] of [["rootfs", "root"], ["kernel", "kernel"], ["initrd", "initrd"], ["rootfs.manifest", packages.body]] as const) {
      const info = await store.head(BOOT_IMAGES_BUCKET, `${image.id}/${key}`);
      assert.equal(info.metadata.sha256, digest("sha256", body), key);
      assert.equal(info.metadata.md5sum, digest("md5", body), key);
    }
    const chunks: Buffer[] = [];
    for await (const c of await store.get(BOOT_IMAGES_BUCKET, `${image.id}/manifest.json`)) chunks.push(c as Buffer);
    const uploaded = JSON.parse(Buffer.concat(chunks).toString("utf8")) as { artifacts: Array<{ type: string; link: { path: string } }> };
    assert.deepEqual(uploaded.artifacts.map((a) => [a.type, a.link.path.split("/").slice(4).join("/")]), [
      ["application/vnd.cray.image.rootfs.squashfs", "rootfs"],
      ["application/vnd.cray.image.kernel", "kernel"],
      ["application/vnd.cray.image.initrd", "initrd"],
      ["text/tab-separated-values", "rootfs.manifest"],
    ]);
  } finally {
    await store.close();
    await catalog.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test("the record gets the bytes uploaded and the verify boots; each boot's serial log is uploaded under logs/ and listed in manifest.json, a cached boot has none", async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), "kiln-publish-"));
  const catalog = await Catalog.open(undefined, path.join(dir, "data"));
  const store = await openStore(`file://${path.join(dir, "objects")}`);
  try {
    for (const b of BUCKETS) await store.ensureBucket(b);
    const out = path.join(dir, "out");
    await mkdir(path.join(out, "logs"), { recursive: true });
    const digest = (alg: string, t: string) => createHash(alg).update(t).digest("hex");
    const root = { path: "rootfs.squashfs", type: "application/vnd.cray.image.rootfs.squashfs", body: "root".repeat(100) };
    await writeFile(path.join(out, root.path), root.body);
    const serial = "SeaBIOS\nLinux version 6.1.0\nkiln-verify: reached userspace\n";
    await writeFile(path.join(out, "logs/verify-generic-pxe.log"), serial);
    await writeFile(path.join(out, "manifest.json"), JSON.stringify({ version: "1.0", created: "2026-12-03 11:00:00", artifacts: [{ type: root.type, md5: digest("md5", root.body), link: { type: "file", path: root.path } }] }));
    await writeFile(
      path.join(out, "result.json"),
      JSON.stringify({
        artifacts: [{ name: "squashfs", path: root.path, type: root.type, ftype: "squashfs", sha256: digest("sha256", root.body), md5: digest("md5", root.body), size: root.body.length }],
        verify: [
          { flavor: "generic", target: "pxe", ok: true, seconds: 41.5, log: "logs/verify-generic-pxe.log" },
          { flavor: "generic", target: "qcow2-bios", ok: true, seconds: 0, cached: true, log: "logs/verify-generic-qcow2-bios.log" },
          // A path no boot writes: not uploaded, whatever result.json says.
          { flavor: "generic", target: "iso-bios", ok: true, seconds: 1, log: "../../etc/passwd" },
        ],
      }),
    );
    const kiln = { job_id: "00000000-0000-4000-8000-000000000002", source_image_id: null, flavors: [], package_diff: null };
    const image = await publishImage(catalog, store, { outDir: out, name: "web", arch: "x86_64", jobId: kiln.job_id, kiln }, new JobLog(catalog, kiln.job_id));
    const logPath = `s3://${BOOT_IMAGES_BUCKET}/${image.id}/logs/verify-generic-pxe.log`;
    assert.equal(image.kiln?.size, root.body.length + serial.length, "the rootfs and the serial log");
    assert.deepEqual(image.kiln?.verify, [
      { flavor: "generic", target: "pxe", ok: true, seconds: 41.5, log: logPath },
      { flavor: "generic", target: "qcow2-bios", ok: true, seconds: 0, cached: true, log: null },
      { flavor: "generic", target: "iso-bios", ok: true, seconds: 1, log: null },
    ]);
    const chunks: Buffer[] = [];
    for await (const c of await store.get(BOOT_IMAGES_BUCKET, `${image.id}/logs/verify-generic-pxe.log`)) chunks.push(c as Buffer);
    assert.equal(Buffer.concat(chunks).toString("utf8"), serial);
    const m: Buffer[] = [];
    for await (const c of await store.get(BOOT_IMAGES_BUCKET, `${image.id}/manifest.json`)) m.push(c as Buffer);
    const uploaded = JSON.parse(Buffer.concat(m).toString("utf8")) as { artifacts: Array<{ type: string; md5: string; link: { path: string } }> };
    assert.deepEqual(
      uploaded.artifacts.map((a) => [a.type, a.link.path]),
      [
        [root.type, `s3://${BOOT_IMAGES_BUCKET}/${image.id}/rootfs`],
        ["text/vnd.kiln.serial-log", logPath],
      ],
      "the log is in the manifest, so delete and undelete move it",
    );
    assert.equal(uploaded.artifacts[1]!.md5, digest("md5", serial));
  } finally {
    await store.close();
    await catalog.close();
    await rm(dir, { recursive: true, force: true });
  }
});
