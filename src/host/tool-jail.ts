/**
 * A jail for a host program that works on an image (the Ansible controller): the build host's
 * programs, and nothing else of the build host.
 *
 * Its root is a directory Kiln makes in the work dir: the host's /usr bound read-only (with the
 * host's /bin, /lib … symlinks of a merged-/usr system), a minimal /etc written here (root's
 * passwd and group entries, hosts, nsswitch.conf, the host's resolv.conf so the network works),
 * an empty /root, and the folders the caller binds read-only (a recipe's playbook folder). The
 * image is bound recursively at /mnt/image with the jail's own /proc, /sys and /dev in it
 * (JailOptions.imageApi). The host's /etc, /root, /home, /var, Kiln's data dir and every other
 * build are not in it: a playbook's `lookup('file', '/etc/shadow')` or a task delegated to
 * localhost finds this root's files, not the host's.
 *
 * The jail is host/jail.ts's (own mount, PID, IPC and UTS namespaces, root pivoted, no user
 * namespaces, capabilities cut to KEEP_CAPABILITIES) plus whatever `extraCapabilities` the
 * program needs (CAP_SYS_CHROOT for a chroot connection into /mnt/image; climbing out of that
 * chroot lands in this root, which holds nothing of the host but read-only programs).
 */
import { lstat, mkdir, readFile, readlink, symlink, writeFile } from "node:fs/promises";
import path from "node:path";
import type { LogSink } from "./exec.js";
import { openJail, type Jail } from "./jail.js";
import { mountBind } from "./mount.js";
import { Scope } from "./scope.js";

export interface ToolJailOptions {
  log: LogSink;
  workDir: string;
  /** Host folders bound read-only into the jail, e.g. `{ host: "/srv/recipe", at: "/recipe" }`. */
  binds?: Array<{ host: string; at: string }>;
  extraCapabilities?: Record<string, number>;
}

/** Top-level names a Debian root links into /usr on a merged-/usr system. */
const USR_LINKS = ["bin", "sbin", "lib", "lib32", "lib64", "libx32"];

const ETC: Record<string, string> = {
  passwd: "root:x:0:0:root:/root:/bin/sh\n",
  group: "root:x:0:\n",
  hosts: "127.0.0.1 localhost\n::1 localhost\n",
  "nsswitch.conf": "passwd: files\ngroup: files\nhosts: files dns\n",
};

export async function openToolJail(image: string, o: ToolJailOptions): Promise<Jail> {
  const scope = new Scope();
  const host = { log: o.log, workDir: o.workDir };
  try {
    const root = path.join(o.workDir, `tool-root-${Date.now().toString(36)}`);
    for (const d of ["usr", "etc", "root", "tmp", "run", "proc", "sys", "dev", "mnt/image"]) await mkdir(path.join(root, d), { recursive: true });
    for (const name of USR_LINKS) {
      const st = await lstat(path.join("/", name)).catch(() => undefined);
      if (st?.isSymbolicLink()) await symlink(await readlink(path.join("/", name)), path.join(root, name));
      else if (st?.isDirectory()) {
        // A system without merged /usr: its /bin, /lib … are folders of programs, bound like /usr.
        await mkdir(path.join(root, name));
        scope.use(await mountBind(path.join("/", name), path.join(root, name), { ...host, readOnly: true }));
      }
    }
    scope.use(await mountBind("/usr", path.join(root, "usr"), { ...host, readOnly: true }));
    for (const [name, text] of Object.entries(ETC)) await writeFile(path.join(root, "etc", name), text);
    await writeFile(path.join(root, "etc", "resolv.conf"), await readFile("/etc/resolv.conf", "utf8").catch(() => ""));
    for (const b of o.binds ?? []) {
      const at = path.join(root, b.at);
      await mkdir(at, { recursive: true });
      scope.use(await mountBind(b.host, at, { ...host, readOnly: true }));
    }
    const jail = await openJail(root, {
      log: o.log,
      workDir: o.workDir,
      image,
      imageApi: true,
      network: "host",
      lendFiles: false,
      ...(o.extraCapabilities ? { extraCapabilities: o.extraCapabilities } : {}),
    });
    // The jail goes first: its namespace holds binds of the mounts above.
    scope.use(jail);
    return { ...jail, release: () => scope.release() };
  } catch (e) {
    await scope.release();
    throw e;
  }
}
