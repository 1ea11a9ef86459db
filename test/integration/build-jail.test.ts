/**
 * A recipe's commands run in a jail, not a bare chroot: its scripts (and every package's
 * maintainer scripts, update-initramfs, dkms …) cannot reach the build host. The attacks a root
 * shell in a chroot has, each tried by a recipe script against a canary file on the host:
 *  - /proc/1/root: with the host's PID namespace, PID 1's root is the host's / (no escape needed);
 *  - chroot() into a subdirectory and climb out with "..": the classic chroot escape;
 *  - mknod of the host's root disk, then reading its first sector;
 *  - counting the host's processes.
 * Each must be refused with the kernel's reason. The scripts also must not see Kiln's own
 * environment (a worker's store credentials). And an Ansible playbook, whose controller evaluates
 * lookups and `delegate_to: localhost` tasks itself, must find the jail's files there, not the
 * host's. Shares the bootstrap layer with other test files.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdir, rm, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { runKiln, scratch } from "../helpers/kiln.js";

let s: Awaited<ReturnType<typeof scratch>>;
let output = "";
let code: number | null = null;
let ansibleOutput = "";
let ansibleCode: number | null = null;
const secretEnv = `kiln-secret-${randomBytes(8).toString("hex")}`;
const canaryText = `kiln-host-canary-${randomBytes(8).toString("hex")}`;

before(async () => {
  s = await scratch("kiln-jail-", { sharedLayers: true });
  const canary = path.join(s.dir, "canary");
  await writeFile(canary, `${canaryText}\n`);
  const root = await stat("/");
  const major = Math.floor(root.dev / 256) & 0xfff;
  const minor = (root.dev & 0xff) | ((root.dev >> 12) & 0xfff00);
  // Each attack prints one line: "<name>: <what happened>".
  const attack = [
    `if out=$(cat /proc/1/root${canary} 2>&1); then echo "proc1: READ $out"; else echo "proc1: refused: $out"; fi`,
    // perl-base is in every Debian root: chroot(2) into a subdirectory, then climb out.
    `perl -e 'mkdir "/var/tmp/x"; if (!chroot("/var/tmp/x")) { print "chroot: refused: $!\\n"; exit } chdir("..") for 1..64; chroot("."); if (open(my $f, "<", "${canary}")) { print "chroot: READ ", scalar <$f> } else { print "chroot: climbed out but no canary: $!\\n" }'`,
    `if out=$(mknod /var/tmp/hostdisk b ${major} ${minor} 2>&1); then echo "mknod: MADE $(head -c 512 /var/tmp/hostdisk | od -An -tx1 | head -1)"; else echo "mknod: refused: $out"; fi`,
    `echo "processes: $(ls /proc | grep -c '^[0-9][0-9]*$')"`,
    `echo "environment: $(env | grep -c KILN_TEST_SECRET)"`,
  ].join("\n");
  const recipe = [
    "apiVersion: kiln/v1",
    "name: jail-attack",
    "base: { debian: bookworm, variant: minbase }",
    "scripts:",
    "  - name: attack",
    "    run: |",
    ...attack.split("\n").map((l) => `      ${l}`),
    "outputs: [manifest]",
    "verify: none",
  ].join("\n");
  await writeFile(path.join(s.dir, "recipe.yaml"), recipe + "\n");
  const r = await runKiln(["build", path.join(s.dir, "recipe.yaml"), "--out", s.out("out"), "--cache-dir", s.cache, "--verbose"], { env: { KILN_TEST_SECRET: secretEnv } });
  output = r.stdout + r.stderr;
  code = r.code;

  await mkdir(path.join(s.dir, "ansible"));
  const playbook = [
    "- hosts: all",
    "  gather_facts: false",
    "  tasks:",
    "    - debug:",
    `        msg: "LOOKUP:{{ lookup('file', '${canary}', errors='ignore') }}"`,
    "    - shell: \"cat " + canary + " 2>&1 || true; echo procs=$(ls /proc | grep -c '^[0-9][0-9]*$'); ls /var/tmp /home 2>&1 | head -3\"",
    "      delegate_to: localhost",
    "      register: here",
    "    - debug:",
    "        msg: \"DELEGATED:{{ here.stdout_lines | join('|') }}\"",
    "    - copy: { content: \"made by the playbook\\n\", dest: /etc/kiln-ansible }",
  ].join("\n");
  await writeFile(path.join(s.dir, "ansible", "site.yml"), playbook + "\n");
  await writeFile(path.join(s.dir, "ansible", "recipe.yaml"), [
    "apiVersion: kiln/v1",
    "name: jail-ansible",
    "base: { debian: bookworm, variant: minbase }",
    "packages: [python3]",
    "ansible: [{ playbook: site.yml }]",
    "outputs: [manifest]",
    "verify: none",
  ].join("\n") + "\n");
  const a = await runKiln(["build", path.join(s.dir, "ansible", "recipe.yaml"), "--out", s.out("out-ansible"), "--cache-dir", s.cache, "--verbose"], { env: { KILN_TEST_SECRET: secretEnv } });
  ansibleOutput = a.stdout + a.stderr;
  ansibleCode = a.code;
});

after(async () => {
  if (s) await rm(s.dir, { recursive: true, force: true });
});

function line(name: string): string {
  const found = output.split("\n").map((l) => l.replace(/^.*?(?=\b(proc1|chroot|mknod|processes|environment): )/, "")).find((l) => l.startsWith(`${name}: `));
  assert.ok(found, `no "${name}:" line in the build output:\n${output.slice(-4000)}`);
  return found;
}

test("the recipe built (the attacks are refused, not fatal)", () => {
  assert.equal(code, 0, output.slice(-4000));
});

test("a script cannot read the host's files through /proc/1/root: PID 1 is the jail's own", () => {
  const l = line("proc1");
  assert.doesNotMatch(l, new RegExp(canaryText));
  // The jail's PID 1 (its init, on the jail's root) holds capabilities the script lacks: the
  // kernel refuses the ptrace-mode access; and its root has no such path anyway.
  assert.match(l, /^proc1: refused: .*(Permission denied|No such file or directory)/);
});

test("a script cannot chroot() out of the image: no CAP_SYS_CHROOT", () => {
  const l = line("chroot");
  assert.doesNotMatch(l, new RegExp(canaryText));
  assert.match(l, /^chroot: refused: Operation not permitted/);
});

test("a script cannot make a device node of the host's disk: no CAP_MKNOD", () => {
  assert.match(line("mknod"), /^mknod: refused: .*Operation not permitted/);
});

test("a script does not see Kiln's own environment (a worker's credentials)", () => {
  assert.doesNotMatch(output, new RegExp(secretEnv));
  assert.match(line("environment"), /^environment: 0$/);
});

test("an Ansible playbook's controller runs jailed: lookups and delegate_to localhost find the jail's files, not the host's", () => {
  assert.equal(ansibleCode, 0, ansibleOutput.slice(-4000));
  assert.doesNotMatch(ansibleOutput, new RegExp(canaryText), "the canary never reaches the playbook");
  assert.match(ansibleOutput, /"msg": "LOOKUP:"/, "the controller's lookup finds no such file");
  const delegated = /"msg": "DELEGATED:(.*)"/.exec(ansibleOutput)?.[1];
  assert.ok(delegated, ansibleOutput.slice(-3000));
  assert.match(delegated, /No such file or directory/);
  const procs = Number(/procs=(\d+)/.exec(delegated)?.[1]);
  assert.ok(procs >= 1 && procs < 20, `the controller sees ${procs} processes`);
  assert.match(ansibleOutput, /changed: \[\/mnt\/image\]/, "the playbook still changes the image");
});

test("a script sees only the jail's processes, not the host's", () => {
  const n = Number(/^processes: (\d+)/.exec(line("processes"))?.[1]);
  assert.ok(n >= 1 && n < 10, `${n} processes visible`);
});
