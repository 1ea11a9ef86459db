// kiln verify --target: option parsing, its errors, and the command line as a user types it.
// No boot: every case here ends before qemu would start.
import assert from "node:assert/strict";
import { access, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { parseTargets, TARGET_CHOICES, verifyCommand } from "../../src/cli/commands/verify.js";
import { KilnError } from "../../src/errors.js";
import { runKiln } from "../helpers/kiln.js";

let tmp: string;
/** An out dir whose build has the generic flavor's pxe files and its qcow2 disk, no ISO. */
let out: string;

before(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), "kiln-verify-cli-"));
  out = path.join(tmp, "out");
  await mkdir(out);
  const a = (name: string, ftype: string, p: string, flavor?: string) => ({ name, ftype, path: p, type: "t", ...(flavor ? { flavor } : {}) });
  await writeFile(
    path.join(out, "result.json"),
    JSON.stringify({
      recipe: { name: "r", sha256: "x" },
      stages: [],
      artifacts: [a("squashfs", "squashfs", "squashfs"), a("boot-kernel", "boot-kernel", "generic/boot-kernel", "generic"), a("disk.qcow2", "disk1.img", "generic/disk.qcow2", "generic")],
      verify: [],
    }),
  );
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

const usage = (message: RegExp) => (e: unknown) => e instanceof KilnError && e.code === "USAGE" && e.exitCode === 2 && message.test(e.message);

test("--target takes names repeated or comma-separated; none given means every target", () => {
  assert.equal(parseTargets(undefined), undefined);
  assert.equal(parseTargets([]), undefined);
  assert.deepEqual(parseTargets(["pxe"]), ["pxe"]);
  assert.deepEqual(parseTargets(["qcow2-bios,qcow2-uefi", "iso-bios"]), ["qcow2-bios", "qcow2-uefi", "iso-bios"]);
  assert.deepEqual(parseTargets([" pxe , iso-uefi ", "pxe"]), ["pxe", "iso-uefi"]);
  assert.deepEqual(parseTargets(["iso-seeded", "iso-seeded:site-a"]), ["iso-seeded", "iso-seeded:site-a"]);
});

test("an unknown --target lists the targets kiln verify knows, all bad names at once", () => {
  assert.equal(TARGET_CHOICES, "pxe, qcow2-bios, qcow2-uefi, iso-bios, iso-uefi, iso-seeded or iso-seeded:<name>");
  assert.throws(
    () => parseTargets(["vmdk", "pxe,UEFI"]),
    usage(/^--target "vmdk", "UEFI": not a verify target; use pxe, qcow2-bios, qcow2-uefi, iso-bios, iso-uefi, iso-seeded or iso-seeded:<name>$/),
  );
  assert.throws(() => parseTargets(["iso-seeded:"]), usage(/^--target "iso-seeded:": not a verify target/));
  assert.throws(() => parseTargets(["iso-seeded:Site A"]), usage(/^--target "iso-seeded:Site A": not a verify target/));
  assert.throws(() => parseTargets([","]), usage(/^--target: name a target: pxe, /));
});

test("a --target the out dir has no artifact for names what it has, says how to get it, and writes nothing", async () => {
  const io = { signal: new AbortController().signal, stdout: process.stdout };
  await assert.rejects(verifyCommand(out, { target: ["qcow2-uefi,iso-uefi"], cacheDir: tmp }, io), (e: unknown) => {
    assert.ok(e instanceof KilnError && e.code === "USAGE");
    assert.equal(e.message, "--target iso-uefi: not in this build; it has pxe, qcow2-bios, qcow2-uefi");
    assert.equal(e.hint, "a live ISO comes from outputs: [iso] in the recipe (for its first kernel flavor)");
    return true;
  });
  await assert.rejects(verifyCommand(out, { target: ["iso-seeded"], cacheDir: tmp }, io), usage(/^--target iso-seeded: not in this build; it has pxe, qcow2-bios, qcow2-uefi$/));
  // A bad name is refused before the out dir is even read.
  await assert.rejects(verifyCommand(path.join(tmp, "nowhere"), { target: ["floppy"], cacheDir: tmp }, io), usage(/^--target "floppy": not a verify target/));
  await assert.rejects(access(path.join(out, "logs")), "no logs/ written for a refused command line");
  await assert.rejects(access(path.join(tmp, "work")), "no work dir made");
});

test("kiln verify --target on the command line: repeated and comma-separated, exit 2 with the message and hint", async () => {
  const bad = await runKiln(["verify", out, "--target", "pxe,vmdk", "--target", "floppy", "--cache-dir", tmp]);
  assert.equal(bad.code, 2, bad.stderr);
  assert.match(bad.stderr, /^kiln: error: --target "vmdk", "floppy": not a verify target; use pxe, qcow2-bios, qcow2-uefi, iso-bios, iso-uefi, iso-seeded or iso-seeded:<name>$/m);
  assert.match(bad.stderr, /^kiln: hint: several at once: --target qcow2-bios,qcow2-uefi or --target qcow2-bios --target qcow2-uefi$/m);

  const missing = await runKiln(["verify", out, "--target", "qcow2-bios", "--target", "iso-bios,pxe", "--cache-dir", tmp]);
  assert.equal(missing.code, 2, missing.stderr);
  assert.match(missing.stderr, /^kiln: error: --target iso-bios: not in this build; it has pxe, qcow2-bios, qcow2-uefi$/m);
  assert.match(missing.stderr, /^kiln: hint: a live ISO comes from outputs: \[iso\]/m);

  const help = await runKiln(["verify", "--help"]);
  assert.equal(help.code, 0);
  assert.ok(help.stdout.replace(/\s+/g, " ").includes(TARGET_CHOICES), help.stdout);
});
