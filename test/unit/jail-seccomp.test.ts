// The seccomp filter of customize sessions, run through a small classic-BPF interpreter for every
// architecture Kiln has a system call table for (the integration test runs it in the kernel, on
// this machine's architecture only).
import { test } from "node:test";
import assert from "node:assert/strict";
import { SYSCALLS, userNamespaceFilter } from "../../src/host/jail.js";

const CLONE_NEWUSER = 0x10000000;
const CLONE_NEWNS = 0x00020000;
const SIGCHLD = 17;
const ALLOW = 0x7fff0000;
const EPERM = 0x00050001;
const ENOSYS = 0x00050026;

/** Runs the filter on seccomp_data { nr, arch, args[0] } and returns the action. */
function verdict(filter: Buffer, nr: number, arch: number, arg0 = 0): number {
  const data = Buffer.alloc(64);
  data.writeInt32LE(nr | 0, 0);
  data.writeUInt32LE(arch >>> 0, 4);
  data.writeBigUInt64LE(BigInt(arg0), 16);
  let a = 0;
  for (let pc = 0; pc < filter.length / 8; pc++) {
    const code = filter.readUInt16LE(pc * 8);
    const jt = filter.readUInt8(pc * 8 + 2);
    const jf = filter.readUInt8(pc * 8 + 3);
    const k = filter.readUInt32LE(pc * 8 + 4);
    if (code === 0x20) a = data.readUInt32LE(k);
    else if (code === 0x06) return k;
    else if (code === 0x15) pc += a === k ? jt : jf;
    else if (code === 0x35) pc += a >>> 0 >= k ? jt : jf;
    else if (code === 0x45) pc += (a & k) !== 0 ? jt : jf;
    else assert.fail(`unexpected BPF instruction ${code.toString(16)}`);
  }
  return assert.fail("the filter ran off its end");
}

for (const arch of Object.keys(SYSCALLS)) {
  test(`${arch}: new user namespaces are refused, everything else passes`, () => {
    const f = userNamespaceFilter(arch);
    const s = SYSCALLS[arch]!;
    for (const [abi, t] of [["native", { audit: s.audit, unshare: s.unshare, clone: s.clone, clone3: s.clone3 }], ["compat", s.compat]] as const) {
      assert.equal(verdict(f, t.unshare, t.audit, CLONE_NEWUSER), EPERM, `${abi} unshare(CLONE_NEWUSER)`);
      assert.equal(verdict(f, t.unshare, t.audit, CLONE_NEWUSER | CLONE_NEWNS), EPERM, `${abi} unshare(CLONE_NEWUSER|CLONE_NEWNS)`);
      assert.equal(verdict(f, t.clone, t.audit, CLONE_NEWUSER | SIGCHLD), EPERM, `${abi} clone(CLONE_NEWUSER)`);
      assert.equal(verdict(f, t.clone3, t.audit), ENOSYS, `${abi} clone3: ENOSYS, so glibc falls back to clone`);
      assert.equal(verdict(f, t.unshare, t.audit, CLONE_NEWNS), ALLOW, `${abi} unshare(CLONE_NEWNS): refused by the missing capability, not here`);
      assert.equal(verdict(f, t.clone, t.audit, SIGCHLD), ALLOW, `${abi} fork`);
      assert.equal(verdict(f, 0, t.audit), ALLOW, `${abi} system call 0`);
    }
    assert.equal(verdict(f, 0, 0x12345678), EPERM, "an unknown ABI");
    if (arch === "x64") assert.equal(verdict(f, 0x40000000 + s.unshare, s.audit, CLONE_NEWUSER), EPERM, "x32");
  });
}
