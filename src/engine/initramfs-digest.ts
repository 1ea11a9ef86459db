/** One digest over Kiln's initramfs assets (names, modes, contents): part of every kernel layer's key. */
import { treeDigest } from "../cache/tree-digest.js";
import { INITRAMFS_ASSETS } from "../stages/kernel.js";

export async function initramfsDigest(dir = INITRAMFS_ASSETS): Promise<string> {
  return treeDigest(dir);
}
