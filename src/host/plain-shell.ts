/**
 * The not-jailed target of a customize or debug session, as IMS' non-jailed mode: a root shell in
 * a build environment of its own, with the image at /mnt/image. (IMS runs that shell in a
 * container with the image at /mnt/image.)
 *
 * The build environment is a root of its own (a Debian minbase with the usual tools, built and
 * cached by the engine from assets/build-env/recipe.yaml: see build-env.ts), never the build
 * host's. It is made the root of a jail (jail.ts) with these differences:
 *  - the environment's layers are the lower dirs of an overlay whose upper dir is the session's
 *    own and is thrown away with it: what the shell changes outside /mnt/image never reaches the
 *    cache, and two sessions never see each other's changes;
 *  - the image is bound at /mnt/image (not recursively: mounts below the image dir stay outside);
 *  - the jail has a network namespace of its own with only its own loopback interface: nothing of
 *    the host's network, its loopback services (the Kiln API, a database) included, is reachable,
 *    and there is no route out;
 *  - `sys_chroot` is kept, so `chroot /mnt/image` works as it does in IMS. The jail's root is
 *    pivoted and the host's detached, so a chroot inside it can only lead back to the build
 *    environment's root.
 * Everything else is the jail's: own mount, PID, IPC and UTS namespaces, the capability drop and
 * the seccomp filter that forbids new user namespaces.
 */
import { mkdir, realpath, stat } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import path from "node:path";
import { KilnError } from "../errors.js";
import type { LogSink } from "./exec.js";
import { openJail, type Account } from "./jail.js";
import { mountOverlay } from "./mount.js";
import { RootFs } from "./root-fs.js";
import { Scope, type Releasable } from "./scope.js";
import { removeTree } from "./workdir.js";

export const PLAIN_IMAGE_DIR = "/mnt/image";

/** Capabilities a plain session keeps on top of the jail's (numbers from linux/capability.h). */
export const PLAIN_EXTRA_CAPABILITIES: Record<string, number> = {
  sys_chroot: 18, // chroot /mnt/image, as IMS' non-jailed users do
};

export interface PlainShell extends Releasable {
  /** The image directory on the host (its realpath). */
  readonly image: string;
  /** File operations confined to the image directory (for SFTP). */
  readonly files: RootFs;
  /** root's home and shell in the build environment. */
  readonly account: Account;
  /** The devpts instance of the session's terminals (host path). */
  readonly ptyInstance: string;
  /** Host argv that runs `command` (a program of the build environment) in the session, in `cwd`. */
  command(command: string[], cwd?: string): string[];
  /** Settles when the jail's init exits; before release() that means it died. */
  readonly exited: Promise<number>;
}

export interface PlainShellOptions {
  /** The build environment's layer trees, top first (buildEnvironment()). */
  environment: readonly string[];
  log: LogSink;
  workDir: string;
}

export async function openPlainShell(image: string, opts: PlainShellOptions): Promise<PlainShell> {
  if (process.getuid?.() !== 0) throw new KilnError("NOT_ROOT", "a customize session needs root (namespaces, mounts)");
  if (opts.environment.length === 0) throw new KilnError("INPUT_INVALID", "a plain session needs a build environment (its layer trees)");
  const real = await realpath(image).catch(() => {
    throw new KilnError("INPUT_INVALID", `image directory ${image} does not exist`);
  });
  if (!(await stat(real)).isDirectory()) throw new KilnError("INPUT_INVALID", `image ${image} is not a directory`);
  const scope = new Scope();
  try {
    const own = path.join(opts.workDir, `plain-${randomBytes(4).toString("hex")}`);
    await mkdir(own, { recursive: true });
    scope.defer(() => removeTree(own, opts.log));
    const root = scope.use(
      await mountOverlay(path.join(own, "root"), { lower: [...opts.environment], upper: path.join(own, "upper"), work: path.join(own, "ovl") }, { log: opts.log, workDir: opts.workDir }),
    );
    const jail = scope.use(
      await openJail(root.path, { log: opts.log, workDir: opts.workDir, image: real, network: "loopback", extraCapabilities: PLAIN_EXTRA_CAPABILITIES }),
    );
    return {
      image: real,
      files: new RootFs(real, { kind: "path", dir: real }),
      account: jail.account,
      ptyInstance: jail.ptyInstance,
      exited: jail.exited,
      command: (command, cwd = PLAIN_IMAGE_DIR) => jail.command(command, cwd),
      release: () => scope.release(),
    };
  } catch (e) {
    await scope.release().catch((err: Error) => opts.log.line(`plain session: cleanup after a failed start: ${err.message}`));
    throw e;
  }
}
