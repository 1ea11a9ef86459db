/**
 * The digest of a folder tree, for inputs that are folders rather than files (Kiln's initramfs
 * assets, the folders beside an Ansible playbook): "sha256:<hex>" over one line per regular file,
 * `<relative path> <octal mode> <sha256 of the content>`, sorted by path, joined with "\n".
 * A renamed, edited or chmod-ed file changes it; a file's timestamps do not. Symlinks are followed
 * (a role linked in from elsewhere counts) and the walk stops 16 folders deep, so a link loop ends.
 * Folders count only through the files in them. This is the format initramfs-assets keys always
 * had, so kernel layers cached before it stay valid.
 */
import { readdir, stat } from "node:fs/promises";
import path from "node:path";
import { fileDigest, sha256Hex } from "./key.js";

const MAX_DEPTH = 16;

/** `names` limits the walk to those entries of `dir` (missing ones are skipped); default: all of it. */
export async function treeDigest(dir: string, names?: readonly string[]): Promise<string> {
  const lines: string[] = [];
  const walk = async (rel: string, depth: number): Promise<void> => {
    const st = await stat(path.join(dir, rel)).catch(() => undefined);
    if (!st || depth > MAX_DEPTH) return;
    if (st.isDirectory()) {
      for (const name of (await readdir(path.join(dir, rel))).sort()) await walk(path.join(rel, name), depth + 1);
    } else if (st.isFile()) {
      lines.push(`${rel} ${(st.mode & 0o777).toString(8)} ${await fileDigest(path.join(dir, rel))}`);
    }
  };
  for (const name of names ?? (await readdir(dir)).sort()) await walk(name, 0);
  return `sha256:${sha256Hex(lines.join("\n"))}`;
}
