// Runs for real as root: customize sessions driven with the real OpenSSH client (ssh, scp, sftp).
// One Debian minbase root with util-linux's mount (mmdebstrap, once; apt archives shared through
// KILN_TEST_APT_CACHE) for the jail, the build environment of plain sessions built by the engine
// (its layers shared with the other test files of the run through KILN_TEST_SHARED_CACHE), small
// busybox roots for the rest.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { copyFile, mkdir, mkdtemp, readFile, readdir, rm, symlink, writeFile, access } from "node:fs/promises";
import { connect, createServer, type AddressInfo, type Socket } from "node:net";
import path from "node:path";
import ssh2 from "ssh2";
import { MAX_REFUSALS, startSessionServer, type SessionServer, type SessionServerOptions } from "../../src/customize/session-server.js";
import { buildEnvironment } from "../../src/engine/build-env.js";
import { KEEP_CAPABILITIES } from "../../src/host/jail.js";
import { loopsUnder, mountsUnder, processesUnder } from "../helpers/host.js";
import { scratch } from "../helpers/kiln.js";

const SSH_OPTS = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10"];

let dir: string;
let key: string; // the authorized private key
let wrongKey: string;
let secret: { file: string; content: string }; // a host-only file outside every root
let deb: string; // the Debian root
let environment: string[]; // the build environment's layers, top first
let envScratch: string;
const IMAGE_RESOLV = "# the image's own resolv.conf\n";
let jail: SessionServer;
let jailWork: string;
const jailLog: string[] = [];

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(cmd: string, args: string[], opts: { input?: string; timeoutMs?: number; cwd?: string } = {}): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: opts.cwd ?? dir, stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 30_000);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.on("error", () => {});
    child.stdin.end(opts.input ?? "");
  });
}

const ssh = (s: SessionServer, command: string | undefined, opts: { key?: string; extra?: string[]; user?: string; input?: string } = {}) =>
  // ssh takes the first value given for an option: the extra ones go first.
  run("ssh", [...(opts.extra ?? []), ...SSH_OPTS, "-p", String(s.port), "-i", opts.key ?? key, `${opts.user ?? "root"}@127.0.0.1`, ...(command === undefined ? [] : [command])], {
    input: opts.input,
  });

const sftp = (s: SessionServer, batch: string) =>
  run("sftp", [...SSH_OPTS, "-P", String(s.port), "-i", key, "-b", "-", "root@127.0.0.1"], { input: batch });

async function exists(p: string): Promise<boolean> {
  return access(p).then(() => true, () => false);
}

/** A root of busybox-static and its applets; no /proc, /sys, /dev, /tmp or /run. */
async function busyboxRoot(at: string): Promise<string> {
  await mkdir(path.join(at, "bin"), { recursive: true });
  await mkdir(path.join(at, "etc"));
  await mkdir(path.join(at, "root"));
  await copyFile("/bin/busybox", path.join(at, "bin/busybox"));
  for (const applet of execFileSync("/bin/busybox", ["--list"], { encoding: "utf8" }).split("\n")) {
    if (applet && applet !== "busybox") await symlink("busybox", path.join(at, "bin", applet));
  }
  await writeFile(path.join(at, "etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n");
  await writeFile(path.join(at, "etc/os-release"), 'ID=busybox\nPRETTY_NAME="a busybox root"\n');
  return at;
}

function options(target: SessionServerOptions["target"], workDir: string, log: string[]): SessionServerOptions {
  return {
    listen: { host: "127.0.0.1" },
    authorizedKeys: [execFileSync("cat", [`${key}.pub`], { encoding: "utf8" })],
    target,
    workDir,
    log: { line: (l) => log.push(l) },
    markerIntervalMs: 100,
  };
}

/** Nothing of the session is left on the host: mounts, loop devices, processes. */
async function assertReleased(workDir: string, roots: string[]): Promise<void> {
  assert.deepEqual(await mountsUnder(workDir), []);
  const table = execFileSync("findmnt", ["-rn", "-o", "TARGET,SOURCE"], { encoding: "utf8" });
  for (const r of [workDir, ...roots]) assert.ok(!table.includes(r), `findmnt still lists ${r}:\n${table}`);
  assert.deepEqual(loopsUnder(workDir), []);
  assert.deepEqual(processesUnder(workDir), []);
}

const isRoot = process.getuid?.() === 0;

before(async () => {
  if (!isRoot) return;
  dir = await mkdtemp("/var/tmp/kiln-customize-");
  key = path.join(dir, "id_ed25519");
  wrongKey = path.join(dir, "wrong_ed25519");
  execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "operator", "-f", key]);
  execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "stranger", "-f", wrongKey]);
  secret = { file: path.join(dir, "host-only-secret"), content: `host-only-${randomBytes(8).toString("hex")}` };
  await writeFile(secret.file, secret.content + "\n");

  deb = path.join(dir, "debian");
  const apt = path.join(process.env.KILN_TEST_APT_CACHE ?? "/var/cache/kiln-test/apt", "archives");
  await mkdir(apt, { recursive: true });
  const t0 = Date.now();
  // prettier-ignore
  execFileSync("mmdebstrap", [
    // mount: the escape tests must meet the missing capability, not a missing program
    "--mode=root", "--variant=minbase", "--quiet", "--skip=essential/unlink", "--include=mount",
    "--setup-hook=mkdir -p \"$1\"/var/cache/apt/archives/",
    `--setup-hook=sync-in ${apt} /var/cache/apt/archives/`,
    `--customize-hook=sync-out /var/cache/apt/archives ${apt}`,
    "bookworm", deb,
  ], { stdio: ["ignore", "ignore", "inherit"] });
  await rm(path.join(deb, "etc/resolv.conf"), { force: true });
  await writeFile(path.join(deb, "etc/resolv.conf"), IMAGE_RESOLV);
  process.stderr.write(`# mmdebstrap minbase: ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);

  const t1 = Date.now();
  const sc = await scratch("kiln-build-env-", { sharedLayers: true });
  envScratch = sc.dir;
  environment = await buildEnvironment({ cacheDir: sc.cache, outDir: sc.out("out"), signal: new AbortController().signal, emit: () => {} });
  process.stderr.write(`# build environment: ${((Date.now() - t1) / 1000).toFixed(1)} s, ${environment.length} layers\n`);
});

after(async () => {
  if (!isRoot) return;
  await jail?.close();
  for (const m of await mountsUnder(dir)) execFileSync("umount", ["-l", m]);
  await rm(dir, { recursive: true, force: true });
  if (envScratch) await rm(envScratch, { recursive: true, force: true });
});

test("jail: the shell runs commands as root inside the image", { skip: !isRoot && "needs root" }, async (t) => {
  jailWork = path.join(dir, "work-jail");
  const t0 = performance.now();
  jail = await startSessionServer(options({ mode: "jail", root: deb }, jailWork, jailLog));
  const started = performance.now();
  const first = await ssh(jail, "true");
  const firstShell = performance.now();
  assert.equal(first.code, 0, first.stderr + jailLog.join("\n"));
  t.diagnostic(`start ${(started - t0).toFixed(0)} ms, first ssh command ${(firstShell - started).toFixed(0)} ms, start to working shell ${(firstShell - t0).toFixed(0)} ms`);
  assert.equal(jail.status, "established");

  const r = await ssh(jail, "echo hi > /root/x; cat /etc/os-release; id -u; pwd");
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^ID=debian$/m);
  assert.match(r.stdout, /^0\n\/root\n$/m);
  assert.equal(await readFile(path.join(deb, "root/x"), "utf8"), "hi\n");
  assert.equal((await ssh(jail, "exit 7")).code, 7);

  // DNS: the host's resolv.conf for the session.
  assert.equal((await ssh(jail, "cat /etc/resolv.conf")).stdout, await readFile("/etc/resolv.conf", "utf8"));
  // What apt and dpkg need is kept: chown, dpkg's database.
  const d = await ssh(jail, "touch /root/o && chown 1000:1000 /root/o && stat -c %u /root/o && dpkg -s dpkg | grep -c '^Status: install ok'");
  assert.equal(d.stdout, "1000\n1\n", d.stderr);
  // Exactly the kept capabilities, in every set that matters.
  const mask = Object.values(KEEP_CAPABILITIES).reduce((m, c) => m | (1n << BigInt(c)), 0n);
  const caps = (await ssh(jail, "grep ^Cap /proc/self/status")).stdout;
  for (const set of ["CapPrm", "CapEff", "CapBnd"]) assert.equal(BigInt("0x" + new RegExp(`^${set}:\\s*(\\w+)`, "m").exec(caps)![1]!), mask, caps);
  assert.match(caps, /^CapInh:\s*0+$/m);
  assert.match(caps, /^CapAmb:\s*0+$/m);
});

test("jail: a PTY session (ssh -tt) has its terminal inside the jail", { skip: !isRoot && "needs root" }, async () => {
  const r = await ssh(jail, "tty; echo TERM=$TERM", { extra: ["-tt"] });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^\/dev\/pts\/\d+\r?$/m);
  assert.match(r.stdout, /^TERM=\S+\r?$/m);
  // An interactive login shell reading from the terminal.
  const i = await ssh(jail, undefined, { extra: ["-tt"], input: "echo $((6*7))\nexit 3\n" });
  assert.match(i.stdout, /^42\r?$/m, i.stdout + i.stderr);
  assert.equal(i.code, 3);
});

test("jail: window changes reach the shell's terminal", { skip: !isRoot && "needs root" }, async () => {
  const client = new ssh2.Client();
  await new Promise<void>((resolve, reject) => {
    client.on("ready", () => resolve()).on("error", reject);
    client.connect({ host: "127.0.0.1", port: jail.port, username: "root", privateKey: execFileSync("cat", [key]), hostVerifier: () => true });
  });
  try {
    const out = await new Promise<string>((resolve, reject) => {
      client.shell({ rows: 30, cols: 100, term: "xterm" }, (err, stream) => {
        if (err) return reject(err);
        let text = "";
        let step = 0;
        stream.on("data", (d: Buffer) => {
          text += d.toString();
          if (step === 0 && /30 100/.test(text)) {
            step = 1;
            stream.setWindow(50, 132, 0, 0);
            setTimeout(() => stream.write("stty size\n"), 300);
          } else if (step === 1 && /50 132/.test(text)) {
            step = 2;
            stream.write("exit\n");
          }
        });
        stream.on("close", () => resolve(text));
        stream.write("stty size\n");
      });
    });
    assert.match(out, /30 100/);
    assert.match(out, /50 132/);
  } finally {
    client.end();
  }
});

test("jail: scp copies files into and out of the image", { skip: !isRoot && "needs root" }, async () => {
  const local = path.join(dir, "upload.txt");
  await writeFile(local, "uploaded with scp\n");
  const up = await run("scp", [...SSH_OPTS, "-P", String(jail.port), "-i", key, local, "root@127.0.0.1:/root/scp.txt"]);
  assert.equal(up.code, 0, up.stderr);
  assert.equal(await readFile(path.join(deb, "root/scp.txt"), "utf8"), "uploaded with scp\n");
  const down = await run("scp", [...SSH_OPTS, "-P", String(jail.port), "-i", key, "root@127.0.0.1:/etc/debian_version", path.join(dir, "debian_version")]);
  assert.equal(down.code, 0, down.stderr);
  assert.equal(await readFile(path.join(dir, "debian_version"), "utf8"), await readFile(path.join(deb, "etc/debian_version"), "utf8"));
});

test("jail: sftp batch mode puts, lists and gets; /tmp is the jail's own", { skip: !isRoot && "needs root" }, async () => {
  await writeFile(path.join(dir, "put.txt"), "put with sftp\n");
  const r = await sftp(jail, "put put.txt /root/sftp.txt\nls -l /root\nget /root/sftp.txt back.txt\nput put.txt /tmp/in-tmp.txt\nmkdir /root/dir\nln -s /etc/hostname /root/dir/hn\nrename /root/sftp.txt /root/dir/moved.txt\nls /root/dir\n");
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /sftp\.txt/);
  assert.match(r.stdout, /\/root\/dir\/hn\s+\/root\/dir\/moved\.txt/);
  assert.equal(await readFile(path.join(dir, "back.txt"), "utf8"), "put with sftp\n");
  assert.equal(await readFile(path.join(deb, "root/dir/moved.txt"), "utf8"), "put with sftp\n");
  assert.equal(execFileSync("readlink", [path.join(deb, "root/dir/hn")], { encoding: "utf8" }), "/etc/hostname\n");
  // /tmp is the jail's tmpfs: the shell sees the file, the image on disk does not have it.
  assert.equal((await ssh(jail, "cat /tmp/in-tmp.txt")).stdout, "put with sftp\n");
  assert.equal(await exists(path.join(deb, "tmp/in-tmp.txt")), false);
});

test("wrong key, password, keyboard-interactive and other users are refused and logged", { skip: !isRoot && "needs root" }, async () => {
  const wrong = await ssh(jail, "true", { key: wrongKey });
  assert.equal(wrong.code, 255);
  assert.match(wrong.stderr, /Permission denied \(publickey\)/);
  const wrongFp = execFileSync("ssh-keygen", ["-lf", `${wrongKey}.pub`], { encoding: "utf8" }).split(" ")[1];
  assert.ok(jail.events.some((e) => e.type === "auth-refused" && e.method === "publickey" && e.fingerprint === wrongFp), JSON.stringify(jail.events));

  // OpenSSH offers a password only where the server lists it; Kiln lists publickey alone.
  const pw = await run("ssh", [...SSH_OPTS, "-p", String(jail.port), "-o", "PreferredAuthentications=password,keyboard-interactive", "-o", "PubkeyAuthentication=no", "root@127.0.0.1", "true"]);
  assert.equal(pw.code, 255);
  // A client that sends them anyway is refused, and it is logged.
  for (const method of ["password", "keyboard-interactive"] as const) {
    const err = await new Promise<Error | undefined>((resolve) => {
      const c = new ssh2.Client();
      c.on("ready", () => {
        c.end();
        resolve(undefined);
      }).on("error", (e) => resolve(e));
      let asked = false;
      c.connect({
        host: "127.0.0.1",
        port: jail.port,
        username: "root",
        hostVerifier: () => true,
        authHandler: (_left, _partial, next) => {
          if (asked) return next(false as unknown as ssh2.AuthenticationType); // false: give up
          asked = true;
          if (method === "password") return next({ type: "password", username: "root", password: "root" });
          return next({ type: "keyboard-interactive", username: "root", prompt: (_n, _i, _l, prompts, finish) => finish(prompts.map(() => "root")) });
        },
      });
    });
    assert.ok(err, `${method} got in`);
    assert.ok(jail.events.some((e) => e.type === "auth-refused" && e.method === method), `${method} refusal not logged`);
  }
  const other = await ssh(jail, "true", { user: "admin" });
  assert.equal(other.code, 255);
  assert.ok(jail.events.some((e) => e.type === "auth-refused" && e.user === "admin" && /only root/.test(e.reason)));
});

/**
 * Ways out of a jail, each with the denial it must meet: the program exists in the image (checked
 * first), so a "not found" can never pass for the kernel's refusal.
 */
const escapeAttempts = (s: string): Array<[string, string, RegExp]> => [
  ["read a host file through ..", `cat /../../../../..${s}`, /No such file or directory/],
  ["read it through /proc/1/root (the jail's init)", `cat /proc/1/root${s}`, /Permission denied/],
  ["read it through a symlink to /.. made in the jail", `ln -s /.. /tmp/up && cat /tmp/up${s} /tmp/up/../..${s}`, /No such file or directory/],
  ["read it through a relative symlink climbing out", `ln -s ../../../../../../.. /root/up && cat /root/up${s}`, /No such file or directory/],
  ["mount a file system", "mkdir -p /mnt/t && mount -t tmpfs none /mnt/t", /permission denied/i],
  ["bind-mount", "mount --bind / /mnt", /permission denied/i],
  ["create a block device for the host's disk", "mknod /tmp/disk b 254 0 && head -c 512 /tmp/disk | od | head -2", /Operation not permitted/],
  ["create /dev/mem", "mknod /tmp/mem c 1 1", /Operation not permitted/],
  ["enter the init's namespaces", `nsenter -t 1 -m -p cat ${s}`, /Permission denied/],
  ["write a kernel sysctl (core_pattern runs host programs)", "echo '|/bin/true' > /proc/sys/kernel/core_pattern", /Read-only file system/],
  ["create a user namespace (unshare)", "unshare -U -r true", /unshare failed: Operation not permitted/],
  ["create a user namespace (clone with CLONE_NEWUSER)", `perl -e '$r = syscall(${process.arch === "arm64" ? 220 : 56}, 0x10000011, 0, 0, 0, 0); exit 0 if $r == 0; die "clone: $!\\n" if $r < 0; waitpid($r, 0); print "made a user namespace\\n"'`, /clone: Operation not permitted/],
];
const ESCAPE_TOOLS = "cat ln mount mknod nsenter unshare perl";

test("escape attempts from the jail fail", { skip: !isRoot && "needs root" }, async (t) => {
  const s = secret.file;
  const tools = await ssh(jail, `command -v ${ESCAPE_TOOLS} chroot`);
  assert.equal(tools.code, 0, `a tool is missing from the image: ${tools.stdout}`);
  // prettier-ignore
  const attempts: Array<[string, string, RegExp]> = [
    ...escapeAttempts(s),
    ["chroot out", "mkdir -p /tmp/c && chroot /tmp/c /bin/true", /Operation not permitted/],
  ];
  for (const [what, cmd, reason] of attempts) {
    await t.test(what, async () => {
      const r = await ssh(jail, cmd);
      t.diagnostic(`${what}: ${r.stderr.trim().split("\n")[0]}`);
      assert.notEqual(r.code, 0, `${cmd} succeeded: ${r.stdout}`);
      assert.match(r.stderr, reason, `${cmd} failed for another reason`);
      assert.ok(!r.stdout.includes(secret.content) && !r.stderr.includes(secret.content), `${cmd} read the host file`);
    });
  }
  await t.test("the host's SysV shared memory is not visible", async () => {
    const id = execFileSync("ipcmk", ["-M", "4096"], { encoding: "utf8" }).match(/(\d+)/)![1]!;
    try {
      assert.ok((await readFile("/proc/sysvipc/shm", "utf8")).trim().split("\n").length > 1);
      const r = await ssh(jail, "cat /proc/sysvipc/shm");
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.trim().split("\n").length, 1, r.stdout); // the header only: an IPC namespace of its own
    } finally {
      execFileSync("ipcrm", ["-m", id]);
    }
  });
  await t.test("the kernel settings are unchanged and nothing was mounted on the host", async () => {
    assert.notEqual(await readFile("/proc/sys/kernel/core_pattern", "utf8"), "|/bin/true\n");
    assert.deepEqual(await mountsUnder(deb), []);
  });
  await t.test("SFTP paths cannot reach host files", async () => {
    await ssh(jail, "ln -sfn / /root/slash && ln -sfn ../../../../.. /root/dots");
    const names = ["e1", "e2", "e3", "e4", "e5", "e6"];
    const r = await sftp(
      jail,
      [`../../../../..${s}`, `/../../..${s}`, `/proc/1/root${s}`, `/root/slash${s}`, `/root/dots${s}`, `/tmp/up${s}`]
        .map((p, i) => `-get ${p} ${names[i]}`)
        .join("\n") + `\n-put ${s} /../../../..${s}.planted\n`,
    );
    assert.equal(r.code, 0, r.stderr);
    for (const n of names) assert.equal(await exists(path.join(dir, n)), false, `sftp fetched ${n}`);
    assert.equal(await exists(`${s}.planted`), false);
    assert.ok(!r.stdout.includes(secret.content));
  });
});

test("plain: a build environment of its own; no host file, process or loopback service; the image at /mnt/image", { skip: !isRoot && "needs root" }, async (t) => {
  const image = await busyboxRoot(path.join(dir, "plain-env"));
  const work = path.join(dir, "work-plain-env");
  const log: string[] = [];
  // A service on the host's loopback, as the Kiln API or a database would be.
  let reached = 0;
  const service = createServer((c) => {
    reached++;
    c.end("host service\n");
  });
  await new Promise<void>((r) => service.listen(0, "127.0.0.1", r));
  const port = (service.address() as AddressInfo).port;
  const s = await startSessionServer(options({ mode: "plain", image, environment }, work, log));
  try {
    // The usual tools, from the build environment, and the image at /mnt/image.
    const tools = await ssh(s, "for p in bash mount ps less vi nano apt-get dpkg chroot; do command -v $p >/dev/null || echo missing $p; done; cat /mnt/image/etc/os-release; . /etc/os-release; echo env=$ID; pwd");
    assert.equal(tools.code, 0, tools.stderr + log.join("\n"));
    assert.doesNotMatch(tools.stdout, /missing/);
    assert.match(tools.stdout, /^ID=busybox$/m);
    assert.match(tools.stdout, /^env=debian$/m);
    assert.match(tools.stdout, /^\/mnt\/image$/m);
    // Writes under /mnt/image reach the image; `chroot /mnt/image` works, as in IMS.
    const w = await ssh(s, "echo from-plain > /mnt/image/root/w.txt && chroot /mnt/image /bin/cat /etc/os-release");
    assert.equal(w.code, 0, w.stderr);
    assert.match(w.stdout, /ID=busybox/);
    assert.equal(await readFile(path.join(image, "root/w.txt"), "utf8"), "from-plain\n");

    await t.test("the host's files are not there", async () => {
      const r = await ssh(s, `cat ${secret.file}; cat /proc/1/root${secret.file}; ls ${dir}`);
      assert.notEqual(r.code, 0);
      assert.ok(!r.stdout.includes(secret.content), "the host file was read");
      assert.match(r.stderr, new RegExp(`${secret.file}: No such file or directory`));
      // /etc/hostname is the build environment's own.
      const hn = await ssh(s, "cat /etc/hostname");
      assert.equal(hn.code, 0, hn.stderr);
      assert.notEqual(hn.stdout, await readFile("/etc/hostname", "utf8"));
    });
    await t.test("the host's processes are not there", async () => {
      assert.ok(await exists(`/proc/${process.pid}`));
      const r = await ssh(s, `test -e /proc/${process.pid} && echo visible; ps -e -o pid=,comm=`);
      assert.equal(r.code, 0, r.stderr);
      assert.doesNotMatch(r.stdout, /visible/);
      assert.match(r.stdout, /^\s*1 kiln-jail-init$/m);
      assert.doesNotMatch(r.stdout, /\bnode\b|sshd|systemd/);
    });
    await t.test("the host's loopback services are not reachable; lo is the only interface", async () => {
      // The check works: from the jail, which shares the host's network, the service answers.
      const control = await ssh(jail, `exec 3<>/dev/tcp/127.0.0.1/${port} && cat <&3`);
      assert.equal(control.stdout, "host service\n", control.stderr);
      const before = reached;
      const r = await ssh(s, `exec 3<>/dev/tcp/127.0.0.1/${port} && cat <&3`);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /Connection refused/);
      assert.equal(reached, before, "the host's service got a connection");
      const ifs = await ssh(s, "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '; cat /sys/class/net/lo/operstate 2>/dev/null; grep -c . /proc/net/route");
      assert.equal(ifs.stdout.split("\n")[0], "lo");
      assert.equal(ifs.stdout.split("\n")[1], "unknown"); // lo is up (loopback reports "unknown")
      assert.match(ifs.stdout, /^1$/m, "no route: only the header of /proc/net/route");
    });
    await t.test("escapes fail as in the jail", async () => {
      for (const [what, cmd, reason] of escapeAttempts(secret.file)) {
        const r = await ssh(s, cmd);
        assert.notEqual(r.code, 0, `${what}: ${cmd} succeeded: ${r.stdout}`);
        assert.match(r.stderr, reason, `${what}: failed for another reason`);
        assert.ok(!r.stdout.includes(secret.content), `${what}: read the host file`);
      }
    });
    // Nothing the shell changes outside /mnt/image survives the session, nor reaches the cache.
    await ssh(s, "echo scribble > /etc/scribbled");
  } finally {
    await s.close();
    service.close();
  }
  await assertReleased(work, [image]);
  for (const layer of environment) assert.equal(await exists(path.join(layer, "etc/scribbled")), false);
});

test("user namespaces: the host allows them, neither session does", { skip: !isRoot && "needs root" }, async () => {
  // Without this the denial below would prove nothing.
  execFileSync("unshare", ["-U", "-r", "true"]);
  const image = await busyboxRoot(path.join(dir, "userns"));
  const work = path.join(dir, "work-userns");
  const s = await startSessionServer(options({ mode: "plain", image, environment }, work, []));
  try {
    for (const [mode, server] of [["jailed", jail], ["plain", s]] as const) {
      const r = await ssh(server, "unshare -U -r true");
      assert.notEqual(r.code, 0, `${mode}: unshare -U -r succeeded`);
      assert.match(r.stderr, /unshare failed: Operation not permitted/, `${mode}: ${r.stderr}`);
      // Threads still start: glibc's clone3 gets ENOSYS and falls back to clone().
      const threads = await ssh(server, "seq 1 200000 | sort -n --parallel=4 -S 1M | tail -1; grep ^Seccomp: /proc/self/status");
      assert.equal(threads.code, 0, threads.stderr);
      assert.match(threads.stdout, /^200000\nSeccomp:\s+2\n$/, `${mode}: ${threads.stdout}`);
    }
  } finally {
    await s.close();
  }
  await assertReleased(work, [image]);
});

test("jail: touch /tmp/complete resolves the session; the marker never reaches the image", { skip: !isRoot && "needs root" }, async () => {
  assert.equal((await ssh(jail, "touch /tmp/complete")).code, 0);
  assert.equal(await jail.waitForMarker(), "complete");
  assert.equal(jail.status, "complete");
  assert.ok(jail.events.some((e) => e.type === "marker" && e.marker === "complete"));
  assert.equal(await exists(path.join(deb, "tmp/complete")), false);
});

test("jail: close() releases every mount and process; the image keeps only the user's changes", { skip: !isRoot && "needs root" }, async () => {
  // A process that left its process group must go too.
  await ssh(jail, "setsid sleep 600 </dev/null >/dev/null 2>&1 &");
  await jail.close();
  await assertReleased(jailWork, [deb]);
  assert.equal(await readFile(path.join(deb, "etc/resolv.conf"), "utf8"), IMAGE_RESOLV);
  assert.equal(await exists(path.join(deb, "usr/sbin/policy-rc.d")), false);
  assert.deepEqual(await readdir(path.join(deb, "tmp")), []);
  assert.equal(await readFile(path.join(deb, "root/x"), "utf8"), "hi\n");
  assert.equal(await jail.waitForMarker(), "complete");
});

test("jail on a bare root: mount points exist for the session only; /tmp/failed fails it", { skip: !isRoot && "needs root" }, async () => {
  const root = await busyboxRoot(path.join(dir, "bare"));
  const before = (await readdir(root)).sort();
  const work = path.join(dir, "work-bare");
  const log: string[] = [];
  const s = await startSessionServer(options({ mode: "jail", root }, work, log));
  try {
    const r = await ssh(s, "cat /etc/os-release; ls /proc/1 >/dev/null && ls /dev && touch /tmp/failed");
    assert.equal(r.code, 0, r.stderr + log.join("\n"));
    assert.match(r.stdout, /ID=busybox/);
    assert.match(r.stdout, /null/);
    assert.equal(await s.waitForMarker(), "failed");
  } finally {
    await s.close();
  }
  await assertReleased(work, [root]);
  assert.deepEqual((await readdir(root)).sort(), before);
});

test("plain: the image at /mnt/image, its marker, and SFTP confined to the image", { skip: !isRoot && "needs root" }, async () => {
  const image = await busyboxRoot(path.join(dir, "plain"));
  const work = path.join(dir, "work-plain");
  const log: string[] = [];
  // A given host key (here one made by ssh-keygen), checked strictly by the client.
  const hostKey = path.join(dir, "host_ed25519");
  execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", hostKey]);
  const s = await startSessionServer({ ...options({ mode: "plain", image, environment }, work, log), hostKey: await readFile(hostKey) });
  try {
    assert.equal(s.hostKeyFingerprint, execFileSync("ssh-keygen", ["-lf", `${hostKey}.pub`], { encoding: "utf8" }).split(" ")[1]);
    const knownHosts = path.join(dir, "known_hosts");
    await writeFile(knownHosts, `[127.0.0.1]:${s.port} ${s.hostPublicKey}\n`);
    const strict = await ssh(s, "true", { extra: ["-o", "StrictHostKeyChecking=yes", "-o", `UserKnownHostsFile=${knownHosts}`] });
    assert.equal(strict.code, 0, strict.stderr);

    const r = await ssh(s, "pwd; ls /mnt; cat /mnt/image/etc/os-release; echo made > /mnt/image/root/plain.txt");
    assert.equal(r.code, 0, r.stderr + log.join("\n"));
    assert.match(r.stdout, /^\/mnt\/image\nimage\n/);
    assert.match(r.stdout, /ID=busybox/);
    assert.equal(await readFile(path.join(image, "root/plain.txt"), "utf8"), "made\n");

    const f = await sftp(s, `pwd\nls /\nput ${secret.file} /mnt/image/root/put.txt\n-get ${secret.file} stolen\n-get /mnt/image/../..${secret.file} stolen2\n`);
    assert.equal(f.code, 0, f.stderr);
    assert.match(f.stdout, /Remote working directory: \/mnt\/image/);
    assert.equal(await exists(path.join(image, "root/put.txt")), true);
    assert.equal(await exists(path.join(dir, "stolen")), false);
    assert.equal(await exists(path.join(dir, "stolen2")), false);

    assert.equal((await ssh(s, "touch /mnt/image/complete")).code, 0);
    assert.equal(await s.waitForMarker(), "complete");
  } finally {
    await s.close();
  }
  await assertReleased(work, [image]);
  assert.equal(await exists(path.join(image, "complete")), false);
  assert.equal(await exists(path.join(image, "root/plain.txt")), true);
});

test("an abort closes the session and every process and mount with it", { skip: !isRoot && "needs root" }, async () => {
  const root = await busyboxRoot(path.join(dir, "aborted"));
  const work = path.join(dir, "work-abort");
  const ac = new AbortController();
  const s = await startSessionServer({ ...options({ mode: "jail", root }, work, []), signal: ac.signal });
  const waiting = s.waitForMarker();
  const shell = ssh(s, "sleep 600");
  await new Promise((r) => setTimeout(r, 500));
  ac.abort("job cancelled");
  await assert.rejects(waiting, (e: Error & { code?: string }) => e.code === "CANCELLED");
  await s.close(); // the close the abort started
  assert.equal((await shell).code, 255);
  await assertReleased(work, [root]);
});

/** A raw TCP connection to the session that sends nothing: when it closes, and what the server sent before. */
function idleConnection(s: SessionServer, localAddress = "127.0.0.1"): { closed: Promise<number>; received: () => string; ident: Promise<void>; socket: Socket } {
  const t0 = performance.now();
  const socket = connect({ host: "127.0.0.1", port: s.port, localAddress });
  let text = "";
  let gotIdent!: () => void;
  const ident = new Promise<void>((r) => (gotIdent = r));
  socket.on("data", (d: Buffer) => {
    text += d.toString("latin1");
    if (text.startsWith("SSH-2.0-")) gotIdent();
  });
  socket.on("error", () => {});
  const closed = new Promise<number>((r) => socket.on("close", () => r(performance.now() - t0)));
  return { closed, received: () => text, ident, socket };
}

const within = <T>(p: Promise<T>, ms: number): Promise<T | "timeout"> => Promise.race([p, new Promise<"timeout">((r) => setTimeout(() => r("timeout"), ms))]);

test("a connection that never logs in is closed after the login grace time", { skip: !isRoot && "needs root" }, async () => {
  const root = await busyboxRoot(path.join(dir, "grace"));
  const work = path.join(dir, "work-grace");
  const s = await startSessionServer({ ...options({ mode: "jail", root }, work, []), unauthenticated: { graceMs: 1500 } });
  try {
    const idle = idleConnection(s);
    await idle.ident; // accepted: the server spoke first
    const ms = await within(idle.closed, 10_000);
    assert.notEqual(ms, "timeout", "the idle connection is still open after 10 s");
    assert.ok((ms as number) >= 1400 && (ms as number) < 5000, `closed after ${String(ms)} ms`);
    assert.ok(s.events.some((e) => e.type === "dropped" && /login grace time/.test(e.reason)), JSON.stringify(s.events));
    // Logged in, a connection outlives the grace time.
    const r = await ssh(s, "sleep 3; echo still-here");
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "still-here\n");
  } finally {
    await s.close();
  }
  await assertReleased(work, [root]);
});

test("unauthenticated connections are capped per source address and per session", { skip: !isRoot && "needs root" }, async () => {
  const root = await busyboxRoot(path.join(dir, "caps"));
  const work = path.join(dir, "work-caps");
  const s = await startSessionServer({ ...options({ mode: "jail", root }, work, []), unauthenticated: { perAddress: 3, perSession: 5 } });
  const open: Array<ReturnType<typeof idleConnection>> = [];
  try {
    // N from one address are held open; the N+1st is closed at once, before the server says a word.
    for (let i = 0; i < 3; i++) {
      const c = idleConnection(s);
      open.push(c);
      await c.ident;
    }
    const extra = idleConnection(s);
    assert.notEqual(await within(extra.closed, 3000), "timeout", "the extra connection from the same address was accepted");
    assert.equal(extra.received(), "", "the refused connection got no SSH greeting");
    assert.ok(s.events.some((e) => e.type === "dropped" && /3 connections from 127\.0\.0\.1 are not logged in/.test(e.reason)), JSON.stringify(s.events));
    for (const c of open) assert.equal(await within(c.closed, 200), "timeout", "a connection within the cap was closed");
    // The session's cap: two more from other addresses fill it, a third is refused.
    for (const from of ["127.0.0.2", "127.0.0.3"]) {
      const c = idleConnection(s, from);
      open.push(c);
      await c.ident;
    }
    const sixth = idleConnection(s, "127.0.0.4");
    assert.notEqual(await within(sixth.closed, 3000), "timeout", "a sixth unauthenticated connection was accepted");
    assert.ok(s.events.some((e) => e.type === "dropped" && /5 connections of this session are not logged in/.test(e.reason)));
    // Once they are gone, the operator gets in.
    for (const c of open) c.socket.destroy();
    await Promise.all(open.map((c) => c.closed));
    const r = await ssh(s, "echo in");
    assert.equal(r.stdout, "in\n", r.stderr);
  } finally {
    for (const c of open) c.socket.destroy();
    await s.close();
  }
  await assertReleased(work, [root]);
});

test("`none` authentication attempts count toward the refusal limit", { skip: !isRoot && "needs root" }, async () => {
  const root = await busyboxRoot(path.join(dir, "none"));
  const work = path.join(dir, "work-none");
  const s = await startSessionServer(options({ mode: "jail", root }, work, []));
  try {
    let attempts = 0;
    const t0 = performance.now();
    const ended = await new Promise<string>((resolve) => {
      const c = new ssh2.Client();
      c.on("ready", () => resolve("logged in"));
      c.on("error", (e) => resolve(e.message));
      c.on("close", () => resolve("closed"));
      c.connect({
        host: "127.0.0.1",
        port: s.port,
        username: "root",
        hostVerifier: () => true,
        authHandler: (_left, _partial, next) => {
          attempts++;
          if (attempts > 100) return next(false as unknown as ssh2.AuthenticationType); // gave up: the server never stopped it
          return next({ type: "none", username: "root" });
        },
      });
    });
    assert.notEqual(ended, "logged in");
    assert.ok(attempts <= MAX_REFUSALS + 1, `${attempts} none attempts before the server closed the connection`);
    assert.ok(performance.now() - t0 < 10_000);
    assert.ok(s.events.some((e) => e.type === "dropped" && new RegExp(`${MAX_REFUSALS} refused authentication attempts`).test(e.reason)), JSON.stringify(s.events));
  } finally {
    await s.close();
  }
  await assertReleased(work, [root]);
});
