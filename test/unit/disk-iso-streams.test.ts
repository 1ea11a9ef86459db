// A build's qcow2 and live ISO reach a published stream as extra items of their flavor's product
// (ftypes disk1.img and iso, which MAAS skips); a seeded ISO, which holds one site's data, never does.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { BuildResult, SeededIso } from "../../src/artifacts/result.js";
import { ARTIFACT_KINDS } from "../../src/artifacts/types.js";
import { fileDigests } from "../../src/cache/key.js";
import { checkStream, openSource } from "../../src/streams/check.js";
import type { ProductsFile } from "../../src/streams/format.js";
import { publish } from "../../src/streams/publish.js";
import { fakeOut } from "../helpers/streams.js";

let dir: string;
before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "kiln-disk-streams-"));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

test("qcow2 and ISO are extra items of the flavor's product; seeded ISOs stay out", async () => {
  const out = path.join(dir, "out");
  const result: BuildResult = await fakeOut(out, { seed: "1", flavors: ["generic"] });
  const add = async (rel: string, kind: { name: string; type: string; ftype: string }) => {
    await writeFile(path.join(out, rel), `${kind.name}\n`);
    return { name: kind.name, path: rel, type: kind.type, ftype: kind.ftype, flavor: "generic", kpackage: "linux-image-amd64", ...(await fileDigests(path.join(out, rel))) };
  };
  result.artifacts.push(await add("generic/disk.qcow2", ARTIFACT_KINDS.qcow2), await add("generic/live.iso", ARTIFACT_KINDS.iso));
  const seeded: SeededIso = { ...(await add("generic/live-site-a.iso", ARTIFACT_KINDS.seededIso)), seed: { name: "site-a", dir: "/s", datasource: "nocloud", seconds: 1 } };
  result.seeded = [seeded];
  result.verify = [{ flavor: "generic", target: "qcow2-uefi", firmware: "uefi", ok: true, seconds: 90, log: "logs/x.log", secureBoot: true }];
  await writeFile(path.join(out, "result.json"), JSON.stringify(result, null, 2));

  const stream = path.join(dir, "stream");
  await publish([out], { to: stream, label: "candidate", naming: { prefix: "org.kiln" }, graceSeconds: 86400, now: new Date("2025-07-24T08:00:00Z") });
  const products = JSON.parse(await readFile(path.join(stream, "streams/v1/org.kiln:candidate:v3:download.json"), "utf8")) as ProductsFile;
  const product = Object.values(products.products)[0]!;
  const items = Object.values(product.versions)[0]!.items;
  assert.deepEqual(Object.keys(items).sort(), ["boot-initrd", "boot-kernel", "boot-params", "disk1.img", "iso", "manifest", "squashfs"]);
  assert.match(items["disk1.img"]!.path, /\/generic\/generic\/disk\.qcow2$/);
  assert.equal(items.iso!.sha256, result.artifacts.find((a) => a.ftype === "iso")!.sha256);
  const check = await checkStream(openSource(stream));
  assert.deepEqual(check.violations, []);
  assert.ok(!JSON.stringify(products).includes("live-site-a"), "the seeded ISO is not published");
});
