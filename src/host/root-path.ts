/**
 * Paths inside an image root, resolved the way a process chrooted there would resolve them.
 *
 * An image's symlinks are the image's business: `/etc/motd -> /run/motd` means the image's /run,
 * not the host's. Joining `root + path` and letting the host follow links would let a hostile (or
 * just ordinary) image redirect Kiln's writes onto the build host. Every host-side write into a
 * root goes through resolveInRoot().
 */
import { lstat, readlink, mkdir } from "node:fs/promises";
import path from "node:path";

const MAX_LINKS = 40; // as the kernel's ELOOP limit

/**
 * Returns the host path that `imagePath` (absolute, inside the image) names, following the
 * image's symlinks within `root`. The last component is followed only when `followLast` is set,
 * so callers can replace a symlink itself.
 */
export async function resolveInRoot(root: string, imagePath: string, followLast = true): Promise<string> {
  if (!path.isAbsolute(imagePath)) throw new Error(`resolveInRoot: ${imagePath} is not absolute`);
  let links = 0;
  const pending = splitPath(imagePath);
  const done: string[] = [];
  while (pending.length > 0) {
    const part = pending.shift()!;
    if (part === ".") continue;
    if (part === "..") {
      done.pop(); // ".." at the image's / stays at / (as in a chroot)
      continue;
    }
    const candidate = path.join(root, ...done, part);
    const isLast = pending.length === 0;
    let st;
    try {
      st = await lstat(candidate);
    } catch {
      // Does not exist (yet): the rest is taken literally.
      done.push(part);
      continue;
    }
    if (st.isSymbolicLink() && (!isLast || followLast)) {
      if (++links > MAX_LINKS) throw new Error(`too many symlinks resolving ${imagePath} in the image`);
      const target = await readlink(candidate);
      if (target.startsWith("/")) done.length = 0;
      pending.unshift(...splitPath(target));
      continue;
    }
    done.push(part);
  }
  return path.join(root, ...done);
}

/** mkdir -p inside the image, each level resolved in the image. Returns the host path. */
export async function mkdirInRoot(root: string, imageDir: string): Promise<string> {
  const host = await resolveInRoot(root, imageDir);
  await mkdir(host, { recursive: true });
  return host;
}

function splitPath(p: string): string[] {
  return p.split("/").filter((s) => s !== "");
}
