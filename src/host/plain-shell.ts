/**
 * The not-jailed target of a customize or debug session: the operator's own root shell on the
 * build host, with the image at /mnt/image. (IMS' non-jailed mode is a build container with the
 * image at /mnt/image.) Each shell or command gets a private mount namespace of the host in which
 * /mnt is a small tmpfs holding only image/, the image bound there; the host's mount table never
 * sees it, and it goes away with the command.
 *
 * Nothing protects the host from this shell: it runs with all of root's capabilities on the
 * host's own files. It is meant for operators who are root on the build host anyway (debug shells
 * of failed builds, like IMS' `enable_debug`). SFTP is still confined to the image.
 */
import os from "node:os";
import { realpath, stat } from "node:fs/promises";
import { KilnError } from "../errors.js";
import type { Account } from "./jail.js";
import { RootFs } from "./root-fs.js";
import type { Releasable } from "./scope.js";
import { toolVersions } from "./tools.js";

export const PLAIN_IMAGE_DIR = "/mnt/image";

export interface PlainShell extends Releasable {
  /** The image directory on the host (its realpath). */
  readonly image: string;
  /** File operations confined to the image directory (for SFTP). */
  readonly files: RootFs;
  /** The host root's home and shell. */
  readonly account: Account;
  /** Host argv that runs `command` (a host program) with the image at /mnt/image, in `cwd`. */
  command(command: string[], cwd?: string): string[];
}

/**
 * `cd` into the image first: once the tmpfs covers /mnt the image's own path may be hidden (an
 * image under /mnt/...), but the cwd still holds it, and `mount -c --rbind .` binds the cwd.
 */
const PLAIN_SETUP = String.raw`
cd "$1"
mount -t tmpfs -o mode=0755,size=64k kiln-mnt /mnt
mkdir /mnt/image
mount -c --rbind . /mnt/image
cd "$2" 2>/dev/null || cd /mnt/image
shift 2
exec "$@"
`;

export async function openPlainShell(image: string): Promise<PlainShell> {
  if (process.getuid?.() !== 0) throw new KilnError("NOT_ROOT", "a customize session needs root (namespaces, mounts)");
  await toolVersions(["unshare", "mount", "script", "stty"]);
  const real = await realpath(image).catch(() => {
    throw new KilnError("INPUT_INVALID", `image directory ${image} does not exist`);
  });
  if (!(await stat(real)).isDirectory()) throw new KilnError("INPUT_INVALID", `image ${image} is not a directory`);
  const me = os.userInfo();
  return {
    image: real,
    files: new RootFs(real, { kind: "path", dir: real }),
    account: { home: me.homedir, shell: me.shell ?? "/bin/sh" },
    // prettier-ignore
    command: (command, cwd = PLAIN_IMAGE_DIR) =>
      ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-euc", PLAIN_SETUP, "kiln-plain", real, cwd, ...command],
    release: async () => {},
  };
}
