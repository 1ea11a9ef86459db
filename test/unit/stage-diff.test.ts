// The per-stage diff harness's comparison (test/helpers/stage-diff.ts): what makes a stage test
// fail, and that its report names each unexpected and missing change with its sign.
import { test } from "node:test";
import assert from "node:assert/strict";
import { compareChanges, parseExpected, type Change } from "../helpers/stage-diff.js";

const changes: Change[] = [
  { sign: "+", path: "/etc/sysctl.d/" },
  { sign: "+", path: "/etc/sysctl.d/90-kiln.conf" },
  { sign: "~", path: "/etc/passwd", detail: "content" },
  { sign: "-", path: "/etc/ssh/ssh_host_rsa_key" },
  { sign: "+", path: "/usr/lib/modules/6.1.0-57-amd64/kernel/fs/ext4.ko" },
];

test("a list that names every change, with globs, matches", () => {
  const list = parseExpected(`# comment
+ /etc/sysctl.d/
+ /etc/sysctl.d/*.conf
~ /etc/passwd
- /etc/ssh/ssh_host_*_key
+ /usr/lib/modules/*-amd64/**
+? /var/log/**
`);
  assert.equal(compareChanges(changes, list), "");
});

test("a change of another sign than listed is unexpected, and a listed change that did not happen is missing", () => {
  const report = compareChanges(changes, parseExpected(`+ /etc/sysctl.d/
+ /etc/sysctl.d/90-kiln.conf
+ /etc/passwd
- /etc/ssh/ssh_host_*_key
+ /usr/lib/modules/**
- /etc/machine-id
`));
  assert.match(report, /^unexpected \(the stage did this, the list does not allow it\):\n {2}~ \/etc\/passwd {3}\(content\)$/m);
  assert.match(report, /^missing \(the list expects this, the stage did not do it\):\n {2}\+ \/etc\/passwd\n {2}- \/etc\/machine-id$/m);
  assert.match(report, /the whole diff \(5 changes\)/);
});

test("* stays in one path segment; ** crosses them", () => {
  assert.match(compareChanges([{ sign: "+", path: "/a/b/c" }], parseExpected("+ /a/*")), /unexpected[^]*\+ \/a\/b\/c/);
  assert.equal(compareChanges([{ sign: "+", path: "/a/b/c" }], parseExpected("+ /a/**")), "");
  assert.equal(compareChanges([{ sign: "+", path: "/etc/rcS.d/S01udev" }], parseExpected("+ /etc/rc?.d/[SK]01*")), "");
});

test("a malformed line is an error naming the line", () => {
  assert.throws(() => parseExpected("+ /ok\nadded /etc/x\n"), /line 2: "added \/etc\/x"/);
});
