/** Looks up users and groups in an image's own /etc/passwd and /etc/group (not the host's). */
import { readFile } from "node:fs/promises";
import { resolveInRoot } from "../host/root-path.js";

async function readTable(root: string, file: string): Promise<Map<string, number>> {
  const map = new Map<string, number>();
  let text = "";
  try {
    text = await readFile(await resolveInRoot(root, file), "utf8");
  } catch {
    return map;
  }
  for (const line of text.split("\n")) {
    const f = line.split(":");
    if (f.length >= 3 && f[0]) map.set(f[0], Number(f[2]));
  }
  return map;
}

/** "user:group" (names or numbers) → numeric ids, as the image defines them. */
export async function resolveOwner(root: string, owner: string): Promise<{ uid: number; gid: number }> {
  const [user = "root", group = user] = owner.split(":");
  const id = async (name: string, table: string, what: string) => {
    if (/^\d+$/.test(name)) return Number(name);
    const found = (await readTable(root, table)).get(name);
    if (found === undefined) throw new Error(`${what} "${name}" does not exist in the image (${table}); create it first (a script, or the packages that add it)`);
    return found;
  };
  return { uid: await id(user, "/etc/passwd", "user"), gid: await id(group, "/etc/group", "group") };
}
