/** One digest over Kiln's initramfs assets (names, modes, contents): part of every kernel layer's key. */
import { readdir, readFile, stat } from "node:fs/promises";
import path from "node:path";
import { sha256Hex } from "../cache/key.js";
import { INITRAMFS_ASSETS } from "../stages/kernel.js";

export async function initramfsDigest(dir = INITRAMFS_ASSETS): Promise<string> {
  const parts: string[] = [];
  const walk = async (rel: string) => {
    for (const name of (await readdir(path.join(dir, rel))).sort()) {
      const r = path.join(rel, name);
      const st = await stat(path.join(dir, r));
      if (st.isDirectory()) await walk(r);
      else parts.push(`${r} ${(st.mode & 0o777).toString(8)} ${sha256Hex(await readFile(path.join(dir, r)))}`);
    }
  };
  await walk("");
  return `sha256:${sha256Hex(parts.join("\n"))}`;
}
