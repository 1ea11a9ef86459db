/**
 * The jail of a customize session: a root shell inside an image root that cannot reach the host.
 *
 * Layout. One init process per session holds the jail; every shell and command enters it, and
 * SFTP reaches its files from the host through /proc/<init>/root (RootFs, confined to the jail's
 * own mounts):
 *
 *   unshare --mount --pid --ipc --uts [--net] --fork   new mount and PID namespaces, and IPC and UTS
 *                                                  ones (the host's SysV shared memory and message
 *                                                  queues belong to uid 0 too)
 *     sh JAIL_SETUP (host tools, still on the host's /)
 *       mounts, in the new namespace only (the host's mount table never sees them):
 *         <root>            bind of itself: pivot_root needs a mount point
 *         /proc             a fresh procfs of the new PID namespace (only the jail's processes);
 *                           /proc/sys, sysrq-trigger, irq, bus, fs read-only, because writing
 *                           them changes the whole host kernel (kernel.core_pattern runs a host
 *                           program as root); kcore, keys, timer_list masked
 *         /sys              sysfs read-only
 *         /dev              tmpfs with null zero full random urandom tty, /dev/pts = this
 *                           session's devpts instance (newinstance: none of the host's ttys),
 *                           /dev/shm tmpfs. Never the host's /dev: no disk is reachable
 *         /tmp, /run        tmpfs: what the session leaves there (the markers among it) never
 *                           lands in the image
 *         /mnt/image        with `image`: a bind (not recursive) of that host directory
 *       exec perl JAIL_INIT (from memory from now on)
 *         pivot_root(".", ".") then umount2(".", MNT_DETACH): the image becomes / of the
 *         namespace and the host's root is detached from it, not merely hidden as by chroot (a
 *         chroot keeps the old root in the mount tree; with the old root gone there is no
 *         "outside" left to climb to)
 *         then stays PID 1: reaps orphans; exits when Kiln closes its stdin (or dies), and the
 *         kernel kills every process left in the namespace with it.
 *
 *   perl JAIL_ENTER per command (from memory, so nothing of the image runs with privileges):
 *     setns() into the init's namespaces (the mount one last: root and cwd become the jail's /),
 *     fork (a new PID namespace applies to children),
 *     drop every capability not in KEEP_CAPABILITIES from the bounding set and clear the
 *     inheritable and ambient sets, install the seccomp filter that forbids new user namespaces
 *     (userNamespaceFilter), then exec the command from the image. Root's exec gives it
 *     exactly the bounding set: enough for apt and dpkg, not enough to mount, mknod, load modules,
 *     ptrace, open files by handle or change the host's network.
 *
 * Why perl: util-linux has the parts (unshare, pivot_root, nsenter, setpriv) but no program that
 * enters namespaces *and then* drops capabilities before running the image's binary: nsenter
 * execs the image's program with full capabilities, and setpriv run first would take away the
 * CAP_SYS_ADMIN setns() needs (and setpriv from the image could be replaced by the jailed user).
 * perl-base is Essential on Debian and already in memory when the host's files disappear. The
 * system call numbers are per architecture (SYSCALLS).
 *
 * The image keeps nothing of the session: mount points Kiln had to create (a bare root without
 * /proc) are removed again; /etc/resolv.conf (the host's, so DNS works) and /usr/sbin/policy-rc.d
 * (no daemon starts on the build host's network from a postinst) are lent for the session and
 * restored at release, unless the user changed them: a user's edit is kept.
 *
 * A customize jail shares the host's network namespace (apt needs the network); with
 * `network: "loopback"` (plain sessions, plain-shell.ts) unshare adds --net and the init brings the
 * new namespace's lo up before pivot_root: see docs/customize.md.
 */
import { mkdir, readFile, realpath } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import path from "node:path";
import { KilnError } from "../errors.js";
import type { LogSink } from "./exec.js";
import { mountFs } from "./mount.js";
import { RootFs, RootFsError } from "./root-fs.js";
import { Scope, type Releasable } from "./scope.js";
import { spawnSessionProcess, type SessionProcess } from "./session-process.js";
import { toolVersions } from "./tools.js";
import { removeTree } from "./workdir.js";

export interface JailOptions {
  log: LogSink;
  workDir: string;
  /** How long the init may take to report ready. */
  startTimeoutMs?: number;
  /**
   * A host directory bound at /mnt/image inside the jail (a plain session's image; the jail's
   * root is then its build environment). Not recursive: mounts below it stay outside.
   */
  image?: string;
  /**
   * "host": the build host's network namespace (a customize jail: apt needs the network).
   * "loopback": a network namespace of its own whose only interface is its own lo, up; nothing
   * of the host's network, loopback services included, is reachable.
   */
  network?: "host" | "loopback";
  /** Capabilities kept on top of KEEP_CAPABILITIES. */
  extraCapabilities?: Record<string, number>;
  /**
   * false: keep the /tmp and /run the root already has mounted (a build's chroot session mounts
   * its own tmpfs there and puts the scripts it runs in /tmp) instead of fresh ones.
   */
  ownTmp?: boolean;
  /**
   * With `image`: bind it recursively (the mounts a chroot session made in it come along) and
   * mount the jail's own /proc, /sys and /dev in it, so a program in the jail can chroot into it
   * (the Ansible controller's chroot connection) and find them there.
   */
  imageApi?: boolean;
  /**
   * false: leave the root's /etc/resolv.conf and /usr/sbin/policy-rc.d alone (a build's chroot
   * session has lent them already; a tool jail's root has the host's /usr, read-only). Default:
   * lend them for the session.
   */
  lendFiles?: boolean;
}

export interface Account {
  /** Home directory inside the target (cwd of shells, SFTP's start directory). */
  home: string;
  /** Login shell inside the target. */
  shell: string;
}

export interface Jail extends Releasable {
  /** The image root on the host (its realpath). */
  readonly root: string;
  /** The jail's own view of its files from the host: /proc/<init>/root (its /tmp tmpfs included). */
  readonly view: string;
  /** File operations confined to the jail's own mounts (for SFTP). */
  readonly files: RootFs;
  /** The devpts instance mounted at the jail's /dev/pts (host path). */
  readonly ptyInstance: string;
  /** root's home and shell, from the image's /etc/passwd. */
  readonly account: Account;
  /** Host argv that runs `command` (argv[0] a path in the image) in the jail as root. */
  command(command: string[], cwd?: string): string[];
  /** Settles when the init exits; before release() that means the jail died. */
  readonly exited: Promise<number>;
}

/**
 * Capabilities root keeps in the jail (numbers from linux/capability.h). Everything else is
 * dropped, among it: SYS_ADMIN (mount, pivot_root, setns), SYS_CHROOT, MKNOD (block devices of
 * the host's disks), SYS_MODULE, SYS_RAWIO (/dev/mem, /proc/kcore, ioperm), SYS_PTRACE, SYS_BOOT
 * (reboot, kexec), SYS_TIME, SYSLOG, NET_ADMIN and NET_RAW (the jail shares the host's network:
 * no reconfiguring or sniffing it), DAC_READ_SEARCH (open_by_handle_at() opens any file of the
 * file system by inode number, the classic way out of a chroot on the same disk), BPF, PERFMON,
 * IPC_LOCK, SYS_RESOURCE, LINUX_IMMUTABLE.
 */
export const KEEP_CAPABILITIES: Record<string, number> = {
  chown: 0, // dpkg unpacks files owned by system users
  dac_override: 1, // root reads and writes files whatever their mode (dpkg, editors)
  fowner: 3, // chmod and utimes on files root does not own
  fsetid: 4, // keep setuid/setgid bits when dpkg chowns a file
  kill: 5, // signal processes of other users in the jail (apt's _apt downloader)
  setgid: 6, // apt drops to _apt, su, runuser
  setuid: 7,
  setpcap: 8, // lets a program drop capabilities further; cannot add any beyond this list
  audit_write: 29, // login, su and PAM write audit records
  setfcap: 31, // postinsts set file capabilities (iputils-ping's setcap cap_net_raw+p)
};

interface Syscalls {
  /** AUDIT_ARCH_* of the native ABI, and of the compat ABI the kernel also runs (32-bit programs). */
  audit: number;
  compat: { audit: number; unshare: number; clone: number; clone3: number };
  unshare: number;
  clone: number;
  clone3: number;
  setns: number;
  prctl: number;
  capget: number;
  capset: number;
  pivot_root: number;
  umount2: number;
}

/** System call numbers: x86-64 from asm/unistd_64.h, arm64 from asm-generic/unistd.h. */
export const SYSCALLS: Partial<Record<string, Syscalls>> = {
  // i386 from asm/unistd_32.h, arm from arch/arm/tools/syscall.tbl; AUDIT_ARCH_* from linux/audit.h.
  x64: {
    audit: 0xc000003e, compat: { audit: 0x40000003, unshare: 310, clone: 120, clone3: 435 },
    unshare: 272, clone: 56, clone3: 435, setns: 308, prctl: 157, capget: 125, capset: 126, pivot_root: 155, umount2: 166,
  },
  arm64: {
    audit: 0xc00000b7, compat: { audit: 0x40000028, unshare: 337, clone: 120, clone3: 435 },
    unshare: 97, clone: 220, clone3: 435, setns: 268, prctl: 167, capget: 90, capset: 91, pivot_root: 41, umount2: 39,
  },
};

/**
 * The seccomp filter every command of the jail runs under: no new user namespace.
 *
 * Why: creating a user namespace needs no capability, and inside one the jailed user holds every
 * capability again (over the namespaces it then creates: new mounts, network stacks, the kernel
 * code behind them). Capabilities cannot forbid it, and the host-wide switch
 * (user.max_user_namespaces) would forbid it to every program on the build host. A filter applies
 * to the jail alone, is inherited by every process in it and cannot be removed.
 *
 *  - unshare() and clone() with CLONE_NEWUSER in their flags fail with EPERM;
 *  - clone3() fails with ENOSYS: its flags are in memory the filter cannot read, and on ENOSYS
 *    glibc (pthread_create, posix_spawn) falls back to clone(), which the filter can check. This
 *    is what Docker's default profile does;
 *  - the same for the compat ABI (32-bit programs); x32 system calls and unknown ABIs fail with
 *    EPERM, every one of them.
 * Joining an existing user namespace (setns) needs an open namespace file of one, and the jail
 * sees none: its /proc shows only its own processes.
 */
export function userNamespaceFilter(arch: string): Buffer {
  const sys = SYSCALLS[arch];
  if (!sys) throw new KilnError("TOOL_MISSING", `customize jails are not supported on ${arch} (no system call table)`);
  const LD_ABS = 0x20, JEQ = 0x15, JGE = 0x35, JSET = 0x45, RET = 0x06; // BPF_LD|BPF_W|BPF_ABS, BPF_JMP|…|BPF_K, BPF_RET|BPF_K
  const ALLOW = 0x7fff0000, ERRNO = 0x00050000, EPERM = 1, ENOSYS = 38, CLONE_NEWUSER = 0x10000000, X32 = 0x40000000;
  // seccomp_data: nr at 0, arch at 4, args[0] at 16 (its low 32 bits: the kernels here are little-endian)
  type Jump = string | 0;
  const prog: Array<[number, Jump, Jump, number] | string> = [
    [LD_ABS, 0, 0, 4],
    [JEQ, 0, "compat", sys.audit],
    [LD_ABS, 0, 0, 0],
    ...(arch === "x64" ? [[JGE, "deny", 0, X32] as [number, Jump, Jump, number]] : []),
    [JEQ, "flags", 0, sys.unshare],
    [JEQ, "flags", 0, sys.clone],
    [JEQ, "enosys", 0, sys.clone3],
    [RET, 0, 0, ALLOW],
    "compat",
    [JEQ, 0, "deny", sys.compat.audit],
    [LD_ABS, 0, 0, 0],
    [JEQ, "flags", 0, sys.compat.unshare],
    [JEQ, "flags", 0, sys.compat.clone],
    [JEQ, "enosys", 0, sys.compat.clone3],
    [RET, 0, 0, ALLOW],
    "flags",
    [LD_ABS, 0, 0, 16],
    [JSET, "deny", 0, CLONE_NEWUSER],
    [RET, 0, 0, ALLOW],
    "deny",
    [RET, 0, 0, ERRNO | EPERM],
    "enosys",
    [RET, 0, 0, ERRNO | ENOSYS],
  ];
  const labels = new Map<string, number>();
  let n = 0;
  for (const i of prog) {
    if (typeof i === "string") labels.set(i, n);
    else n++;
  }
  const out = Buffer.alloc(n * 8);
  let pc = 0;
  const rel = (j: Jump) => (j === 0 ? 0 : labels.get(j)! - pc - 1);
  for (const i of prog) {
    if (typeof i === "string") continue;
    const [code, jt, jf, k] = i;
    out.writeUInt16LE(code, pc * 8);
    out.writeUInt8(rel(jt), pc * 8 + 2);
    out.writeUInt8(rel(jf), pc * 8 + 3);
    out.writeUInt32LE(k >>> 0, pc * 8 + 4);
    pc++;
  }
  return out;
}

/** Mount points the jail needs in the image, with the mode of a directory Kiln creates. */
const MOUNT_POINTS: Array<[string, number]> = [["/proc", 0o555], ["/sys", 0o555], ["/dev", 0o755], ["/tmp", 0o1777], ["/run", 0o755]];
const IMAGE_MOUNT_POINTS: Array<[string, number]> = [["/mnt", 0o755], ["/mnt/image", 0o755]];

const HOST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

const POLICY_RC_D = "#!/bin/sh\n# Kiln customize session: no daemon starts during the session (removed afterwards)\nexit 101\n";

/**
 * Runs as PID 1 of the new namespaces, on the host's files. $1 root, $2 devpts, $3 init program,
 * $4 a host directory to bind at /mnt/image or "", $5 "1" to mount fresh tmpfs at /tmp and /run,
 * $6 "1" to bind the image recursively and give it the jail's own /proc, /sys and /dev too.
 */
const JAIL_SETUP = String.raw`
root=$1 pts=$2 init=$3 image=$4 tmp=$5 imageapi=$6
shift 6
api() {
  mount -t proc -o nosuid,nodev,noexec kiln-proc "$1/proc"
  for p in sys sysrq-trigger irq bus fs; do
    if [ -e "$1/proc/$p" ]; then
      mount --bind "$1/proc/$p" "$1/proc/$p"
      mount -o remount,bind,ro "$1/proc/$p"
    fi
  done
  mount -t sysfs -o ro,nosuid,nodev,noexec kiln-sys "$1/sys"
  mount -t tmpfs -o mode=0755,size=16m,nosuid kiln-dev "$1/dev"
  mknod -m 0666 "$1/dev/null" c 1 3
  mknod -m 0666 "$1/dev/zero" c 1 5
  mknod -m 0666 "$1/dev/full" c 1 7
  mknod -m 0666 "$1/dev/random" c 1 8
  mknod -m 0666 "$1/dev/urandom" c 1 9
  mknod -m 0666 "$1/dev/tty" c 5 0
  ln -s /proc/self/fd "$1/dev/fd"
  ln -s /proc/self/fd/0 "$1/dev/stdin"
  ln -s /proc/self/fd/1 "$1/dev/stdout"
  ln -s /proc/self/fd/2 "$1/dev/stderr"
  ln -s pts/ptmx "$1/dev/ptmx"
  mkdir -m 0755 "$1/dev/pts"
  mkdir -m 1777 "$1/dev/shm"
  mount --bind "$pts" "$1/dev/pts"
  mount -t tmpfs -o mode=1777,nosuid,nodev kiln-shm "$1/dev/shm"
  for p in kcore keys timer_list; do
    if [ -f "$1/proc/$p" ]; then mount --bind "$1/dev/null" "$1/proc/$p"; fi
  done
}
mount --rbind "$root" "$root"
api "$root"
if [ -n "$tmp" ]; then
  mount -t tmpfs -o mode=1777,nosuid,nodev kiln-tmp "$root/tmp"
  mount -t tmpfs -o mode=0755,nosuid,nodev kiln-run "$root/run"
fi
if [ -n "$imageapi" ]; then
  mount --rbind "$image" "$root/mnt/image"
  api "$root/mnt/image"
elif [ -n "$image" ]; then
  mount --bind "$image" "$root/mnt/image"
fi
cd "$root"
exec perl -e "$init" -- "$@"
`;

/**
 * PID 1 of the jail. Nothing after pivot_root may load a module or run a program: the host's
 * files are gone. Prints "ready <pid as the host sees it> <its start time>".
 */
const JAIL_INIT = String.raw`
use strict;
my ($SYS_pivot_root, $SYS_umount2, $lo) = @ARGV;
if ($lo) {
  socket(my $s, 2, 2, 0) or die "kiln-jail: socket: $!
";
  my $ifr = pack("a16 s x22", "lo", 0x41);
  ioctl($s, 0x8914, $ifr) or die "kiln-jail: bringing up lo: $!
";
  close($s);
}
my $pid = readlink("/proc/self");
open(my $st, "<", "/proc/self/stat") or die "kiln-jail: /proc/self/stat: $!\n";
my $stat = <$st>;
close($st);
my $start = (split(" ", substr($stat, rindex($stat, ")") + 2)))[19];
my ($new_root, $put_old, $old_root) = (".", ".", ".");
syscall($SYS_pivot_root, $new_root, $put_old) == 0 or die "kiln-jail: pivot_root: $!\n";
syscall($SYS_umount2, $old_root, 2) == 0 or die "kiln-jail: detaching the old root: $!\n";
chdir("/");
$0 = "kiln-jail-init";
$| = 1;
print "ready $pid $start\n";
$SIG{CHLD} = sub { 1 while waitpid(-1, 1) > 0 };
while (1) {
  my $n = sysread(STDIN, my $buf, 64);
  next if !defined($n) && $! == 4;
  last;
}
exit 0;
`;

/** Enters the jail of init <pid> (checked by its start time), drops capabilities, execs. */
const JAIL_ENTER = String.raw`
use strict;
my ($SYS_setns, $SYS_prctl, $SYS_capget, $SYS_capset, $init, $start, $keep, $filter, $cwd, $prog, @args) = @ARGV;
open(my $pidns, "<", "/proc/$init/ns/pid") or die "kiln: the jail is gone\n";
open(my $mntns, "<", "/proc/$init/ns/mnt") or die "kiln: the jail is gone\n";
open(my $ipcns, "<", "/proc/$init/ns/ipc") or die "kiln: the jail is gone\n";
open(my $utsns, "<", "/proc/$init/ns/uts") or die "kiln: the jail is gone\n";
open(my $netns, "<", "/proc/$init/ns/net") or die "kiln: the jail is gone\n";
open(my $st, "<", "/proc/$init/stat") or die "kiln: the jail is gone\n";
my $stat = <$st>;
close($st);
(split(" ", substr($stat, rindex($stat, ")") + 2)))[19] eq $start or die "kiln: the jail is gone\n";
(stat($mntns))[1] != (stat("/proc/self/ns/mnt"))[1] or die "kiln: refusing to enter the host's mount namespace\n";
open(my $lc, "<", "/proc/sys/kernel/cap_last_cap") or die "kiln: cap_last_cap: $!\n";
my $last = <$lc>;
close($lc);
chomp($last);
syscall($SYS_setns, fileno($ipcns), 0x08000000) == 0 or die "kiln: setns(ipc): $!\n";
syscall($SYS_setns, fileno($utsns), 0x04000000) == 0 or die "kiln: setns(uts): $!\n";
syscall($SYS_setns, fileno($netns), 0x40000000) == 0 or die "kiln: setns(net): $!\n";
syscall($SYS_setns, fileno($pidns), 0x20000000) == 0 or die "kiln: setns(pid): $!\n";
syscall($SYS_setns, fileno($mntns), 0x00020000) == 0 or die "kiln: setns(mnt): $!\n";
close($_) for ($ipcns, $utsns, $netns, $pidns, $mntns);
my %keep = map { $_ => 1 } split(/,/, $keep);
my $child = fork();
defined($child) or die "kiln: fork: $!\n";
if ($child == 0) {
  for my $cap (0 .. $last) {
    next if $keep{$cap};
    syscall($SYS_prctl, 24, $cap, 0, 0, 0) == 0 or die "kiln: dropping capability $cap: $!\n";
  }
  syscall($SYS_prctl, 47, 4, 0, 0, 0);
  my $hdr = pack("Li", 0x20080522, 0);
  my $data = "\0" x 24;
  syscall($SYS_capget, $hdr, $data) == 0 or die "kiln: capget: $!\n";
  my @caps = unpack("L6", $data);
  @caps[2, 5] = (0, 0);
  $data = pack("L6", @caps);
  syscall($SYS_capset, $hdr, $data) == 0 or die "kiln: capset: $!\n";
  my $bpf = pack("H*", $filter);
  my $fprog = pack("S x6 P", length($bpf) / 8, $bpf);
  syscall($SYS_prctl, 22, 2, $fprog, 0, 0) == 0 or die "kiln: seccomp: $!\n";
  chdir($cwd) or chdir("/");
  exec { $prog } $prog, @args;
  die "kiln: cannot run $prog in the image: $!\n";
}
$0 = "kiln-jail-enter";
$SIG{INT} = $SIG{QUIT} = "IGNORE";
$SIG{TERM} = $SIG{HUP} = sub { kill($_[0], $child) };
while (waitpid($child, 0) == -1) { last unless $! == 4 }
exit(($? & 127) ? 128 + ($? & 127) : $? >> 8);
`;
// In JAIL_ENTER: setns flags 0x08000000 CLONE_NEWIPC, 0x04000000 CLONE_NEWUTS, 0x40000000
// CLONE_NEWNET (the host's own namespace when the jail shares it), 0x20000000 CLONE_NEWPID
// (applies to children: hence the fork), 0x00020000 CLONE_NEWNS; prctl 24 PR_CAPBSET_DROP, 47/4
// PR_CAP_AMBIENT_CLEAR_ALL; capset version 3 with the inheritable set cleared, because root's exec
// adds the inheritable set back on top of the bounding set; prctl 22/2 PR_SET_SECCOMP
// SECCOMP_MODE_FILTER with a struct sock_fprog (length, 6 bytes padding, pointer: 64-bit only),
// allowed without no_new_privs because CAP_SYS_ADMIN is still effective here (no_new_privs would
// break su and setuid programs in the image). The parent stays outside the jail's PID namespace,
// relays the exit status and ignores ^C (meant for the shell). In JAIL_INIT: umount2 flag 2
// MNT_DETACH, waitpid flag 1 WNOHANG; ioctl 0x8914 SIOCSIFFLAGS with a struct ifreq (name, flags
// IFF_UP|IFF_RUNNING, padded to 40 bytes).

export async function openJail(root: string, opts: JailOptions): Promise<Jail> {
  if (process.getuid?.() !== 0) throw new KilnError("NOT_ROOT", "a customize jail needs root (namespaces, mounts)");
  const sys = SYSCALLS[process.arch];
  if (!sys) throw new KilnError("TOOL_MISSING", `customize jails are not supported on ${process.arch} (no system call table)`);
  await toolVersions(["unshare", "mount", "script", "stty", "perl"]);

  const log = opts.log;
  const real = await realpath(root).catch(() => {
    throw new KilnError("INPUT_INVALID", `image root ${root} does not exist`);
  });
  await mkdir(opts.workDir, { recursive: true });
  const work = path.relative(real, await realpath(opts.workDir));
  if (!work.startsWith("..") && !path.isAbsolute(work)) {
    // The jail's devpts instance lives in the work dir: it must not be reachable from the jail.
    throw new KilnError("INPUT_INVALID", `the work dir ${opts.workDir} is inside the image root ${root}; give the session a work dir beside it`);
  }
  const image = new RootFs(real, { kind: "path", dir: real });
  const scope = new Scope();
  try {
    for (const [dir, mode] of [...MOUNT_POINTS, ...(opts.image ? IMAGE_MOUNT_POINTS : [])]) {
      if (await ensureDirectory(image, dir, mode)) {
        log.line(`jail: created mount point ${dir} (removed afterwards)`);
        scope.defer(() => image.rmdir(dir).catch((e: Error) => log.line(`jail: keeping ${dir}: ${e.message}`)));
      }
    }
    if (opts.lendFiles !== false) {
      scope.use(await lendFile(image, "/etc/resolv.conf", await hostResolvConf(), 0o644, log));
      scope.use(await lendFile(image, "/usr/sbin/policy-rc.d", POLICY_RC_D, 0o755, log));
    }
    const account = await rootAccount(image);

    const own = path.join(opts.workDir, `jail-${randomBytes(4).toString("hex")}`);
    await mkdir(own, { recursive: true });
    scope.defer(() => removeTree(own, log));
    const pts = scope.use(
      await mountFs("devpts", "kiln-devpts", path.join(own, "pts"), ["newinstance", "ptmxmode=0666", "mode=0620"], { log, workDir: opts.workDir }),
    );

    const bound = opts.image ? await realpath(opts.image) : "";
    const ownNet = opts.network === "loopback";
    const namespaces = ["--mount", "--pid", "--ipc", "--uts", ...(ownNet ? ["--net"] : [])];
    // prettier-ignore
    const init = spawnSessionProcess(
      ["unshare", ...namespaces, "--fork", "--kill-child", "--propagation", "private", "--",
       "/bin/sh", "-euc", JAIL_SETUP, "kiln-jail", real, pts.path, JAIL_INIT, bound, opts.ownTmp === false ? "" : "1", opts.imageApi ? "1" : "",
       String(sys.pivot_root), String(sys.umount2), ownNet ? "1" : ""],
      { env: { PATH: HOST_PATH, LC_ALL: "C" }, workDir: opts.workDir, log, logAs: `unshare ${namespaces.join(" ")} --fork … (the jail's init, root ${real}${bound ? `, ${bound} at /mnt/image` : ""})` },
    );
    let released = false;
    scope.defer(async () => {
      released = true;
      init.stdin.end(); // EOF: the init exits, and the kernel kills the rest of the jail
      const timer = setTimeout(() => void init.stop(), 3000);
      await init.exited;
      clearTimeout(timer);
    });
    const { pid, start } = await waitReady(init, opts.startTimeoutMs ?? 30_000, log);
    const view = `/proc/${pid}/root`;
    const files = new RootFs(view, { kind: "mounts", ids: await fileMounts(pid) });
    const keep = Object.values({ ...KEEP_CAPABILITIES, ...opts.extraCapabilities }).join(",");
    const filter = userNamespaceFilter(process.arch).toString("hex");
    log.line(`jail: ready, init pid ${pid}, root ${real}`);
    void init.exited.then((code) => {
      if (!released) log.line(`jail: init exited unexpectedly with code ${code}`);
    });

    return {
      root: real,
      view,
      files,
      ptyInstance: pts.path,
      account,
      exited: init.exited,
      // prettier-ignore
      command: (command, cwd = account.home) =>
        ["perl", "-e", JAIL_ENTER, "--", String(sys.setns), String(sys.prctl), String(sys.capget), String(sys.capset),
         String(pid), start, keep, filter, cwd, ...command],
      release: () => scope.release(),
    };
  } catch (e) {
    await scope.release().catch((err: Error) => log.line(`jail: cleanup after a failed start: ${err.message}`));
    throw e;
  }
}

/** Reads the init's "ready" line; collects its stderr for the error if it never comes. */
async function waitReady(init: SessionProcess, timeoutMs: number, log: LogSink): Promise<{ pid: number; start: string }> {
  const errors: string[] = [];
  init.stderr.setEncoding("utf8");
  init.stderr.on("data", (d: string) => {
    for (const l of d.split("\n")) {
      if (!l.trim()) continue;
      log.line(`jail: ${l}`);
      errors.push(l);
    }
  });
  init.stdout.setEncoding("utf8");
  let out = "";
  const ready = await new Promise<RegExpExecArray | undefined>((resolve) => {
    const timer = setTimeout(() => resolve(undefined), timeoutMs);
    init.stdout.on("data", (d: string) => {
      out += d;
      const m = /^ready (\d+) (\d+)$/m.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m);
      }
    });
    void init.exited.then(() => {
      clearTimeout(timer);
      resolve(undefined);
    });
  });
  if (!ready) {
    throw new KilnError("STAGE_FAILED", `the customize jail did not start${errors.length ? `: ${errors.slice(-3).join(" · ")}` : ` within ${timeoutMs / 1000} s`}`);
  }
  return { pid: Number(ready[1]), start: ready[2]! };
}

/**
 * Mount ids of the jail's file systems that SFTP may serve: all of its mounts except /proc,
 * /sys and /dev (kernel interfaces and device nodes of the host).
 */
async function fileMounts(pid: number): Promise<Set<number>> {
  const ids = new Set<number>();
  for (const line of (await readFile(`/proc/${pid}/mountinfo`, "utf8")).split("\n")) {
    const [id, , , , target] = line.split(" ");
    if (!id || !target) continue;
    if (/^\/(proc|sys|dev)(\/|$)/.test(target)) continue;
    ids.add(Number(id));
  }
  return ids;
}

/** Makes `dir` a directory in the image if it is missing; true if it was created. */
async function ensureDirectory(image: RootFs, dir: string, mode: number): Promise<boolean> {
  try {
    const st = await image.stat(dir, false);
    if (st.isDirectory()) return false;
    const what = st.isSymbolicLink() ? "a symlink" : "not a directory";
    throw new KilnError("INPUT_INVALID", `the image's ${dir} is ${what}; the jail mounts a file system there and needs a directory`);
  } catch (e) {
    if (!(e instanceof RootFsError && e.code === "ENOENT")) throw e;
  }
  await image.mkdir(dir, mode);
  await image.setAttributes(dir, { mode });
  return true;
}

/** root's home and login shell from the image's /etc/passwd (defaults: /root, /bin/sh). */
async function rootAccount(image: RootFs): Promise<Account> {
  let home = "/root";
  let shell = "/bin/sh";
  try {
    const fh = await image.openFile("/etc/passwd", { read: true, write: false });
    const text = await fh.readFile("utf8").finally(() => fh.close());
    const fields = text.split("\n").find((l) => l.startsWith("root:"))?.split(":");
    if (fields?.[5]) home = fields[5];
    if (fields?.[6]) shell = fields[6];
  } catch {
    // no passwd: defaults
  }
  const isDir = await image.stat(home).then((s) => s.isDirectory(), () => false);
  const isFile = await image.stat(shell).then((s) => s.isFile(), () => false);
  return { home: isDir ? home : "/", shell: isFile ? shell : "/bin/sh" };
}

async function hostResolvConf(): Promise<string> {
  return readFile("/etc/resolv.conf", "utf8").catch(() => "");
}

/**
 * Puts `content` at `imagePath` for the session. On release, what the image had there (a file,
 * a symlink or nothing) comes back, unless the session changed the file: then the user's version
 * stays. Skipped when the directory is missing or the path is a directory.
 */
async function lendFile(image: RootFs, imagePath: string, content: string, mode: number, log: LogSink): Promise<Releasable> {
  const noop: Releasable = { release: async () => {} };
  const dirOk = await image.stat(path.posix.dirname(imagePath)).then((s) => s.isDirectory(), () => false);
  if (!dirOk) return noop;
  type Saved = { kind: "none" } | { kind: "link"; to: string } | { kind: "file"; data: Buffer; mode: number; uid: number; gid: number };
  let saved: Saved;
  try {
    const st = await image.stat(imagePath, false);
    if (st.isSymbolicLink()) saved = { kind: "link", to: await image.readlink(imagePath) };
    else if (st.isFile()) saved = { kind: "file", data: await readAll(image, imagePath), mode: st.mode & 0o7777, uid: st.uid, gid: st.gid };
    else return noop;
    await image.unlink(imagePath);
  } catch (e) {
    if (!(e instanceof RootFsError && e.code === "ENOENT")) throw e;
    saved = { kind: "none" };
  }
  await writeAll(image, imagePath, Buffer.from(content), mode);
  return {
    async release() {
      let unchanged: boolean;
      try {
        const st = await image.stat(imagePath, false);
        unchanged = st.isFile() && (await readAll(image, imagePath)).equals(Buffer.from(content));
        if (!unchanged) {
          log.line(`jail: keeping ${imagePath} as the session left it`);
          return;
        }
        await image.unlink(imagePath);
      } catch (e) {
        if (!(e instanceof RootFsError && e.code === "ENOENT")) throw e;
      }
      if (saved.kind === "link") await image.symlink(saved.to, imagePath);
      else if (saved.kind === "file") {
        await writeAll(image, imagePath, saved.data, saved.mode);
        await image.setAttributes(imagePath, { uid: saved.uid, gid: saved.gid, mode: saved.mode });
      }
    },
  };
}

async function readAll(image: RootFs, imagePath: string): Promise<Buffer> {
  const fh = await image.openFile(imagePath, { read: true, write: false });
  return fh.readFile().finally(() => fh.close());
}

async function writeAll(image: RootFs, imagePath: string, data: Buffer, mode: number): Promise<void> {
  const fh = await image.openFile(imagePath, { read: false, write: true, create: true, exclusive: true }, mode);
  try {
    await fh.writeFile(data);
    await fh.chmod(mode);
  } finally {
    await fh.close();
  }
}

