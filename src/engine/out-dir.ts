/**
 * The out dir: what a build leaves for its user. Kiln only ever deletes files it wrote itself
 * (listed in the previous result.json), so pointing --out at the wrong folder loses nothing.
 */
import { copyFile, mkdir, readdir, readFile, rm, rmdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { KilnError } from "../errors.js";
import type { BuildResult } from "../artifacts/result.js";

const OWN_FILES = ["result.json", "manifest.json"];

export async function prepareOutDir(out: string): Promise<void> {
  let entries: string[];
  try {
    entries = await readdir(out);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") {
      await mkdir(path.join(out, "logs"), { recursive: true });
      return;
    }
    if ((e as NodeJS.ErrnoException).code === "ENOTDIR") {
      throw new KilnError("INPUT_INVALID", `--out ${out}: is a file, not a directory; name a new or empty directory`);
    }
    throw e;
  }
  if (entries.length > 0) {
    let previous: BuildResult;
    try {
      previous = JSON.parse(await readFile(path.join(out, "result.json"), "utf8")) as BuildResult;
    } catch {
      // logs/ alone is what a failed build leaves: ours too.
      if (entries.every((e) => e === "logs")) previous = { artifacts: [] } as unknown as BuildResult;
      else {
        throw new KilnError("INPUT_INVALID", `--out ${out}: not empty and has no result.json, so it is not a Kiln out dir; name a new or empty directory`);
      }
    }
    for (const a of previous.artifacts ?? []) {
      if (typeof a.path === "string" && !a.path.includes("..") && !path.isAbsolute(a.path)) {
        await rm(path.join(out, a.path), { force: true });
        const dir = path.dirname(a.path);
        if (dir !== ".") await rmdir(path.join(out, dir)).catch(() => {}); // only if empty
      }
    }
    for (const f of OWN_FILES) await rm(path.join(out, f), { force: true });
    await rm(path.join(out, "logs"), { recursive: true, force: true });
  }
  await mkdir(path.join(out, "logs"), { recursive: true });
}

export async function placeFile(src: string, out: string, rel: string): Promise<void> {
  await mkdir(path.dirname(path.join(out, rel)), { recursive: true });
  // A copy, not a hard link: editing a file in out/ must not change the cache.
  await copyFile(src, path.join(out, rel));
}

export async function writeJson(file: string, value: unknown, indent = 2): Promise<void> {
  await writeFile(file, JSON.stringify(value, null, indent) + "\n");
}
