// The checker against streams that break MAAS' rules one at a time, and the small pieces the
// publisher is made of (layout, timestamps, names, Debian version order).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { checkStream, openSource } from "../../src/streams/check.js";
import { compareDebVersions } from "../../src/streams/deb-version.js";
import { dumpJson, streamTimestamp } from "../../src/streams/format.js";
import { productSubarch } from "../../src/streams/names.js";
import { parseDistroInfo } from "../../src/streams/releases.js";

const sha = (s: string) => execFileSync("sha256sum", { input: s, encoding: "utf8" }).split(" ")[0]!;

describe("kiln streams check", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "kiln-streams-check-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  // The spoilers edit plain JSON documents in ways no type would allow: that is their point.
  /* eslint-disable @typescript-eslint/no-explicit-any */
  /** A stream with one image product and one bootloader product, each valid, then `spoil` applied. */
  async function stream(name: string, spoil: (index: any, products: any, boot: any) => void): Promise<string> {
    const root = path.join(dir, name);
    await mkdir(path.join(root, "streams/v1"), { recursive: true });
    await mkdir(path.join(root, "noble/amd64/20250709/ga-24.04/generic"), { recursive: true });
    const files: Record<string, string> = {
      "noble/amd64/20250709/squashfs": "squash",
      "noble/amd64/20250709/squashfs.manifest": "pkg\t1\n",
      "noble/amd64/20250709/ga-24.04/generic/boot-kernel": "kernel",
      "noble/amd64/20250709/ga-24.04/generic/boot-initrd": "initrd",
    };
    for (const [p, c] of Object.entries(files)) await writeFile(path.join(root, p), c);
    const item = (ftype: string, p: string, extra = {}) => ({ ftype, path: p, sha256: sha(files[p]!), size: files[p]!.length, ...extra });
    const updated = "Thu, 24 Jul 2025 08:01:49 +0000";
    const products = {
      content_id: "com.ubuntu.maas:stable:v3:download", datatype: "image-ids", format: "products:1.0", updated,
      products: {
        "com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04": {
          arch: "amd64", kflavor: "generic", krel: "noble", label: "stable", os: "ubuntu", release: "noble", release_codename: "Noble Numbat",
          release_title: "24.04 LTS", subarch: "ga-24.04", subarches: "generic,ga-24.04", support_eol: "2029-05-31", version: "24.04",
          versions: { "20250709": { items: {
            "boot-kernel": item("boot-kernel", "noble/amd64/20250709/ga-24.04/generic/boot-kernel", { kpackage: "linux-generic" }),
            "boot-initrd": item("boot-initrd", "noble/amd64/20250709/ga-24.04/generic/boot-initrd", { kpackage: "linux-generic" }),
            manifest: item("manifest", "noble/amd64/20250709/squashfs.manifest"),
            squashfs: item("squashfs", "noble/amd64/20250709/squashfs"),
          } } },
        },
      },
    };
    await mkdir(path.join(root, "bootloaders/uefi/amd64/20250101.0"), { recursive: true });
    await writeFile(path.join(root, "bootloaders/uefi/amd64/20250101.0/shim-signed.tar.xz"), "shim");
    const boot = {
      content_id: "com.ubuntu.maas:stable:1:bootloader-download", datatype: "image-downloads", format: "products:1.0", updated,
      products: {
        "com.ubuntu.maas.stable:1:grub-efi-signed:uefi:amd64": {
          arch: "amd64", arches: "amd64", "bootloader-type": "uefi", label: "stable", os: "grub-efi-signed",
          versions: { "20250101.0": { items: { "shim-signed": { ftype: "archive.tar.xz", path: "bootloaders/uefi/amd64/20250101.0/shim-signed.tar.xz", sha256: sha("shim"), size: 4, src_package: "shim-signed", src_release: "bookworm", src_version: "1.44" } } } },
        },
      },
    };
    const entry = (f: { content_id: string; datatype: string; products: object }) => ({ datatype: f.datatype, format: "products:1.0", path: `streams/v1/${f.content_id}.json`, products: Object.keys(f.products), updated });
    const index = { format: "index:1.0", updated, index: { [products.content_id]: entry(products), [boot.content_id]: entry(boot) } };
    spoil(index, products, boot);
    await writeFile(path.join(root, `streams/v1/${products.content_id}.json`), dumpJson(products));
    await writeFile(path.join(root, `streams/v1/${boot.content_id}.json`), dumpJson(boot));
    await writeFile(path.join(root, "streams/v1/index.json"), dumpJson(index));
    return root;
  }

  const violations = async (name: string, spoil: (index: any, products: any, boot: any) => void) =>
    (await checkStream(openSource(await stream(name, spoil)))).violations.map((v) => `${v.where}: ${v.message}`);
  const P = "com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04";
  const B = "com.ubuntu.maas.stable:1:grub-efi-signed:uefi:amd64";

  test("a stream shaped like images.maas.io passes", async () => {
    assert.deepEqual(await violations("good", () => {}), []);
  });

  const cases: Array<[string, (index: any, products: any, boot: any) => void, RegExp]> = [
    ["a product without label", (_i, p) => delete p.products[P].label, /products\["com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04"\]: label: missing; MAAS needs it/],
    ["a float version", (_i, p) => (p.products[P].version = 24.04), /version: 24.04 must be a non-empty string \(a float version/],
    ["a version without manifest", (_i, p) => delete p.products[P].versions["20250709"].items.manifest, /items: no "manifest"; MAAS rejects the whole products file/],
    ["an index entry without format", (i) => delete i.index["com.ubuntu.maas:stable:v3:download"].format, /format: missing; the simplestreams client silently skips/],
    ["a bad timestamp", (i) => (i.updated = "2025-07-24T08:01:49Z"), /index.json: updated: "2025-07-24T08:01:49Z" is not of the form/],
    ["a size as a string", (_i, p) => (p.products[P].versions["20250709"].items.squashfs.size = "6"), /size: "6" must be an integer/],
    ["no sha256", (_i, p) => delete p.products[P].versions["20250709"].items.squashfs.sha256, /sha256: missing; MAAS needs it/],
    ["no kpackage", (_i, p) => delete p.products[P].versions["20250709"].items["boot-kernel"].kpackage, /items\["boot-kernel"\]: kpackage: missing/],
    ["a renamed item", (_i, p) => (p.products[P].versions["20250709"].items.squashfs.ftype = "squashfs.img"), /ftype: "squashfs.img"; must be "squashfs"/],
    ["a bad version name", (_i, p) => (p.products[P].versions["2025-07-09"] = p.products[P].versions["20250709"]), /versions\["2025-07-09"\]: the version name is not YYYYMMDD/],
    ["a name without :v3:", (_i, p) => ((p.products["com.ubuntu.maas.stable:boot:x"] = p.products[P]), delete p.products[P]), /matches neither MAAS filter/],
    ["a name that disagrees with the fields", (_i, p) => (p.products[P].kflavor = "lowlatency"), /the name should end in ":<release or version>:amd64:ga-24.04-lowlatency"/],
    ["a file the stream does not have", (_i, p) => (p.products[P].versions["20250709"].items.squashfs.path = "noble/amd64/x/squashfs"), /noble\/amd64\/x\/squashfs: missing \(a client would get 404\)/],
    ["a path leaving the stream", (_i, p) => (p.products[P].versions["20250709"].items.squashfs.path = "../etc/passwd"), /path: "..\/etc\/passwd" must be a relative path/],
    ["an index that lists other products", (i) => (i.index["com.ubuntu.maas:stable:v3:download"].products = ["x"]), /the index lists products \["x"\]/],
    ["a bootloader MAAS does not take", (_i, _p, b) => (b.products[B].arch = "i386"), /\(os, bootloader-type, arch\) = \["grub-efi-signed","uefi","i386"\] is not one MAAS takes/],
    ["a bootloader without arches", (_i, _p, b) => delete b.products[B].arches, /arches: missing/],
    ["a bootloader item MAAS does not take", (_i, _p, b) => {
      const v = b.products[B].versions["20250101.0"].items;
      v["grub-efi-amd64-signed"] = v["shim-signed"];
      delete v["shim-signed"];
    }, /MAAS takes only bootloader items named/],
  ];
  for (const [name, spoil, expected] of cases) {
    test(`finds ${name}`, async () => {
      const found = await violations(name.replace(/\W+/g, "-"), spoil);
      assert.ok(found.some((v) => expected.test(v)), `expected ${expected} in:\n${found.join("\n")}`);
    });
  }
});

describe("stream pieces", () => {
  test("timestamps are RFC 2822 in UTC, as simplestreams writes them", () => {
    assert.equal(streamTimestamp(new Date("2025-07-24T08:01:49.500Z")), "Thu, 24 Jul 2025 08:01:49 +0000");
  });
  test("JSON is indent 1 with sorted keys and a newline", () => {
    assert.equal(dumpJson({ b: 1, a: { d: [1], c: "x" } }), '{\n "a": {\n  "c": "x",\n  "d": [\n   1\n  ]\n },\n "b": 1\n}\n');
  });
  test("the flavor goes before -edge in product names", () => {
    assert.equal(productSubarch("hwe-24.04-edge", "lowlatency"), "hwe-24.04-lowlatency-edge");
    assert.equal(productSubarch("ga-24.04", "generic"), "ga-24.04");
    assert.equal(productSubarch("generic", "cloud"), "generic-cloud");
  });
  test("release facts come from distro-info-data", () => {
    const info = parseDistroInfo("version,codename,series,created,release,eol,eol-lts,eol-elts\n12,Bookworm,bookworm,2021-08-14,2023-06-10,2026-07-11,2028-06-30,2033-06-30\n,Sid,sid,1993-08-16\n");
    assert.deepEqual(info.get("bookworm"), { version: "12", codename: "Bookworm", title: "12 (Bookworm)", eol: "2026-07-11", eolLts: "2028-06-30" });
    assert.deepEqual(info.get("sid"), { version: "sid", codename: "Sid", title: "Sid" });
  });
  test("Debian versions order as dpkg orders them", () => {
    const pairs: Array<[string, string]> = [
      ["1.0", "1.1"], ["1.0~rc1", "1.0"], ["1:0.1", "2.0"], ["252.36-1~deb12u1", "252.39-1~deb12u2"], ["1.0-1", "1.0-1+b1"],
      ["2.36-9+deb12u9", "2.36-9+deb12u14"], ["1.0a", "1.0+"], ["1.0", "1.0-0"], ["6.1.119-1", "6.1.192-2"], ["1.2.3", "1.2.10"], ["1.0.", "1.0~"],
    ];
    for (const [a, b] of pairs) {
      const dpkg = (op: string) => {
        try {
          execFileSync("dpkg", ["--compare-versions", a, op, b]);
          return true;
        } catch {
          return false;
        }
      };
      const expected = dpkg("lt") ? -1 : dpkg("eq") ? 0 : 1;
      assert.equal(compareDebVersions(a, b), expected, `${a} vs ${b}`);
      assert.equal(compareDebVersions(b, a), expected === 0 ? 0 : -expected, `${b} vs ${a}`);
    }
  });
});
