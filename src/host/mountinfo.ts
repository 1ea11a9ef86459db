/** Reads the mount table (/proc/self/mountinfo), which is the truth about what is mounted where. */
import { readFile } from "node:fs/promises";
import path from "node:path";

/** Mount points at or below `dir`, deepest first (the order to unmount them in). */
export async function mountTargetsUnder(dir: string): Promise<string[]> {
  const prefix = path.resolve(dir);
  const text = await readFile("/proc/self/mountinfo", "utf8");
  const targets: string[] = [];
  for (const line of text.split("\n")) {
    const target = line.split(" ")[4];
    if (!target) continue;
    const t = unescapeMountPath(target);
    if (t === prefix || t.startsWith(prefix + "/")) targets.push(t);
  }
  // Later entries were mounted later (possibly on top of earlier ones): undo in reverse.
  return targets.reverse();
}

/** mountinfo escapes space, tab, newline and backslash as octal (\040 …). */
function unescapeMountPath(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}
