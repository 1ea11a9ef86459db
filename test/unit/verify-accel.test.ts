import assert from "node:assert/strict";
import { test } from "node:test";
import { accelArgs, chooseAccel } from "../../src/verify/accel.js";

const withVmx = "processor\t: 0\nflags\t\t: fpu vme de pse tsc msr pae mce vmx sse2\n";
const withSvm = "processor\t: 0\nflags\t\t: fpu svm lm\n";
const noVirt = "processor\t: 0\nflags\t\t: fpu vme de pse tsc msr pae hypervisor\n";

test("kvm only with a usable /dev/kvm and vmx or svm", () => {
  assert.equal(chooseAccel({ kvmDevice: true, cpuinfo: withVmx }).accel, "kvm");
  assert.equal(chooseAccel({ kvmDevice: true, cpuinfo: withSvm }).accel, "kvm");
});

test("tcg when /dev/kvm exists but the CPU shows no vmx/svm (this VM: guests hang)", () => {
  const c = chooseAccel({ kvmDevice: true, cpuinfo: noVirt });
  assert.equal(c.accel, "tcg");
  assert.match(c.why, /no vmx\/svm/);
});

test("tcg without /dev/kvm, whatever the CPU says", () => {
  assert.equal(chooseAccel({ kvmDevice: false, cpuinfo: withVmx }).accel, "tcg");
});

test("vmx must be a flag, not part of another word or line", () => {
  assert.equal(chooseAccel({ kvmDevice: true, cpuinfo: "model name\t: vmx-like cpu\nflags\t\t: fpu vmxe\n" }).accel, "tcg");
});

test("KILN_ACCEL overrides the probe both ways; empty means probe", () => {
  assert.equal(chooseAccel({ override: "tcg", kvmDevice: true, cpuinfo: withVmx }).accel, "tcg");
  assert.equal(chooseAccel({ override: "kvm", kvmDevice: false, cpuinfo: noVirt }).accel, "kvm");
  assert.equal(chooseAccel({ override: "", kvmDevice: true, cpuinfo: noVirt }).accel, "tcg");
});

test("a wrong KILN_ACCEL says what is allowed", () => {
  assert.throws(() => chooseAccel({ override: "hvf", kvmDevice: true, cpuinfo: withVmx }), /KILN_ACCEL=hvf: use "tcg" or "kvm"/);
});

test("qemu arguments per accelerator", () => {
  assert.deepEqual(accelArgs("tcg"), ["-accel", "tcg,thread=multi", "-cpu", "max"]);
  assert.deepEqual(accelArgs("kvm"), ["-accel", "kvm", "-cpu", "host"]);
});
