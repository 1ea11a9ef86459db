/**
 * The modes of a service's data dir: it holds the API tokens, the file store's signing key and
 * (without --database) the whole catalog, so no other local user may read or change any of it.
 *
 *   <data-dir>                 0700
 *   tokens.json, catalog/…, tmp/…, anything else of the service's own
 *                              directories 0700, files 0600
 *   objects/.kiln/signing-key  0600 (the directory above it 0700)
 *   work/, objects/, cache/    0700 on the folder itself; what is inside is left as it is: image
 *                              roots under work/ carry modes of their own (/tmp is 1777), and
 *                              the 0700 folder above keeps other users out of them
 *
 * PGlite's WASM file layer gives every file it creates mode 0666 whatever the umask (so a
 * umask cannot help): the data dir's 0700 is what keeps other users out of files it makes while
 * the service runs, and this pass, run at start (before and after the catalog opens) and at
 * stop, tightens what it made and repairs a data dir made loose by an older Kiln or by hand.
 */
import { chmod, lstat, mkdir, readdir } from "node:fs/promises";
import path from "node:path";

/** Folders whose content is not the service's own state. */
const OPAQUE = new Set(["work", "objects", "cache"]);

/** Creates the data dir if needed and sets the modes above; returns how many modes it changed. */
export async function secureDataDir(dir: string): Promise<number> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  let changed = await setMode(dir, 0o700);
  for (const name of await readdir(dir)) {
    const p = path.join(dir, name);
    if (!OPAQUE.has(name)) {
      changed += await tighten(p);
      continue;
    }
    if ((await lstat(p)).isDirectory()) changed += await setMode(p, 0o700);
    if (name === "objects") changed += await tighten(path.join(p, ".kiln"));
  }
  return changed;
}

/** Directories 0700, files 0600, recursively; symlinks are not followed. */
async function tighten(p: string): Promise<number> {
  const st = await lstat(p).catch(() => undefined);
  if (!st || st.isSymbolicLink()) return 0;
  if (!st.isDirectory()) return st.isFile() ? setMode(p, 0o600, st.mode) : 0;
  let changed = await setMode(p, 0o700, st.mode);
  for (const name of await readdir(p).catch(() => [] as string[])) changed += await tighten(path.join(p, name));
  return changed;
}

async function setMode(p: string, mode: number, current?: number): Promise<number> {
  const have = (current ?? (await lstat(p)).mode) & 0o7777;
  if (have === mode) return 0;
  // A file the catalog removed meanwhile is no longer anyone's concern.
  await chmod(p, mode).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== "ENOENT") throw e;
  });
  return 1;
}
