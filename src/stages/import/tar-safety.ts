/**
 * The safety scan a root tarball passes before Kiln extracts it as root. A tarball is a list of
 * instructions ("create this path, link that one there"), and a hostile or careless one can aim
 * them outside the directory it is unpacked in. Every member is checked, and the archive is
 * refused with the first few offenders and the rule each breaks.
 *
 * Why GNU tar's own listing instead of reading headers here: the scan must see exactly what the
 * extraction will do. A second tar parser (tar-stream, or ours) would disagree with GNU tar on some
 * corner — pax `path` vs GNU long names, base-256 sizes, sparse maps, a truncated last header — and
 * each disagreement is a way to smuggle a member past the scan. `tar --list --verbose` is GNU
 * tar's own reading, it decompresses whatever tar will decompress, and with `LC_ALL=C
 * --quoting-style=c` it prints every name and link target as a C string literal: `"` and `\`
 * escaped, newlines as `\n`, every byte >= 0x80 as octal. One member per line, names delimited,
 * nothing ambiguous — unlike the default listing, where a file named `a -> b` looks like a symlink.
 * `--index-file` sends that listing to a file instead of through a pipe into our memory.
 * `--absolute-names` shows names as stored: without it tar prints hard link targets already
 * stripped of a leading "/" or "../" (what it would do when extracting), hiding the very thing
 * the scan looks for.
 */
import { readFile, rm } from "node:fs/promises";
import path from "node:path";
import { KilnError } from "../../errors.js";
import { execOnImage, invalidImage, type ImportContext } from "./input-errors.js";

export type TarMemberType = "file" | "dir" | "hardlink" | "symlink" | "char" | "block" | "fifo" | "other";

/**
 * One member as tar lists it. `name` and `target` are byte strings (one char per byte, latin1):
 * paths are bytes on Linux, and only `/` and `.` matter to the checks.
 */
export interface TarMember {
  type: TarMemberType;
  /** The type letter of the listing (`-`, `d`, `h`, `l`, `c`, `b`, `p`, `C`, `V` …). */
  letter: string;
  name: string;
  target?: string;
}

export interface ListingParse {
  members: TarMember[];
  /** Lines the parser could not read: refused too, since unread means unchecked. */
  unreadable: string[];
}

const TYPES: Record<string, TarMemberType> = {
  "-": "file",
  C: "file", // contiguous file: a regular file to GNU tar
  d: "dir",
  h: "hardlink",
  l: "symlink",
  c: "char",
  b: "block",
  p: "fifo",
};

/** Parses `LC_ALL=C tar --list --verbose --numeric-owner --quoting-style=c` output. */
export function parseTarListing(text: string): ListingParse {
  const members: TarMember[] = [];
  const unreadable: string[] = [];
  for (const line of text.split("\n")) {
    if (line === "") continue;
    const m = parseListingLine(line);
    if (m) members.push(m);
    else unreadable.push(line);
  }
  return { members, unreadable };
}

function parseListingLine(line: string): TarMember | undefined {
  // `hrw-r--r-- 0/0   0 2024-01-01 00:00 "./b" link to "./a"`: nothing before the name can
  // hold a quote (mode letters, numeric owner, size or major,minor, date), so the name starts at
  // the first one.
  const letter = line[0]!;
  const open = line.indexOf('"');
  if (open < 0) return undefined;
  const name = readCString(line, open);
  if (!name) return undefined;
  const rest = line.slice(name.end);
  const type = TYPES[letter] ?? "other";
  if (type === "hardlink" || type === "symlink") {
    const joiner = type === "hardlink" ? " link to " : " -> ";
    if (!rest.startsWith(joiner) || rest[joiner.length] !== '"') return undefined;
    const target = readCString(rest, joiner.length);
    if (!target || target.end !== rest.length) return undefined;
    return { type, letter, name: name.value, target: target.value };
  }
  // Volume labels and multi-volume headers print a trailer ("--Volume Header--"); they are
  // refused by type below, so the trailer need not parse.
  if (type !== "other" && rest !== "") return undefined;
  return { type, letter, name: name.value };
}

const ESCAPES: Record<string, string> = { n: "\n", t: "\t", r: "\r", a: "\x07", b: "\b", f: "\f", v: "\v", "\\": "\\", '"': '"', "?": "?" };

/** Reads a C string literal starting at `s[start] === '"'`; returns its bytes and where it ended. */
function readCString(s: string, start: number): { value: string; end: number } | undefined {
  let out = "";
  for (let i = start + 1; i < s.length; i++) {
    const c = s[i]!;
    if (c === '"') return { value: out, end: i + 1 };
    if (c !== "\\") {
      out += c;
      continue;
    }
    const e = s[++i];
    if (e === undefined) return undefined;
    if (e >= "0" && e <= "7") {
      let digits = e;
      while (digits.length < 3 && s[i + 1] !== undefined && s[i + 1]! >= "0" && s[i + 1]! <= "7") digits += s[++i];
      out += String.fromCharCode(parseInt(digits, 8) & 0xff);
      continue;
    }
    const mapped = ESCAPES[e];
    if (mapped === undefined) return undefined;
    out += mapped;
  }
  return undefined;
}

/** How a byte-string name is shown to people: UTF-8 decoded, JSON-quoted (newlines stay visible). */
export function showName(bytes: string): string {
  return JSON.stringify(Buffer.from(bytes, "latin1").toString("utf8"));
}

/** Splits a member path into components, dropping empty ones and `.` (`./etc//x` → etc, x). */
function components(p: string): string[] {
  return p.split("/").filter((c) => c !== "" && c !== ".");
}

/** The kernel's limit on symlinks followed in one lookup (MAXSYMLINKS). */
const MAX_HOPS = 40;

/**
 * Checks every member and returns one sentence per offence, in archive order. The rules:
 *
 * 1. Member names are relative and have no `..` component. GNU tar would strip a leading `/` and
 *    skip `..` members itself, but a root tarball that has them was not made from a root tree.
 * 2. The root member (`./`) is a directory.
 * 3. Hard link targets are relative with no `..`: tar links to the path under the extraction dir.
 * 4. Symlinks are resolved the way the kernel would inside the image — relative to the link's own
 *    directory, absolute ones from the image root, following the archive's other symlinks on the
 *    way (a chain `a/b/l -> ..` plus `s -> a/b/l/../../..` climbs out, though each looks tame on
 *    its own) — and must never climb above the root with `..`.
 *    An absolute target such as `/etc/alternatives/editor` is allowed: in a root filesystem it is
 *    normal (update-alternatives, /etc/mtab -> /proc/self/mounts, …), it names a path inside the
 *    image once the image is booted or chrooted, and GNU tar never writes through one while
 *    extracting (it creates links whose target is absolute or has `..` as placeholders and makes
 *    them at the end). The host only meets them if it follows them, and no Kiln code that reads a
 *    root follows links out of it. An absolute target that climbs above `/` with `..`
 *    (`/../../etc/shadow`) is refused: no package makes one; it is someone probing.
 * 5. No member lies under a path the archive makes a symlink (a hard link to a symlink counts),
 *    and no hard link points through one: extracting `a -> /etc` then `a/passwd` would write the
 *    host's /etc/passwd if the link were made first. A tar of a real tree never has such members.
 * 6. Only files, directories, links, device nodes and FIFOs; anything else (volume labels,
 *    multi-volume continuations) is not a root tree. Device nodes are normal in a root (/dev/null
 *    in minimal images) and are extracted as is.
 */
export function findTarEscapes(members: TarMember[]): string[] {
  // One list per member, so the sentences come out in archive order though found in two passes.
  const found: string[][] = members.map(() => []);
  const symlinks = new Map<string, string>();
  const hardlinks = new Map<string, string>();
  const keys: Array<string | undefined> = [];
  const linkKeys: Array<string | undefined> = [];

  members.forEach((m, i) => {
    const problems = found[i]!;
    const who = `${m.type === "symlink" ? "symlink" : m.type === "hardlink" ? "hard link" : "member"} ${showName(m.name)}`;
    let key: string | undefined;
    if (m.name.startsWith("/")) {
      problems.push(`member ${showName(m.name)} is an absolute path`);
    } else if (components(m.name).includes("..")) {
      problems.push(`member ${showName(m.name)} climbs out of the root with ".."`);
    } else {
      key = components(m.name).join("/");
      if (key === "" && m.type !== "dir") problems.push(`member ${showName(m.name)} is the root itself but not a directory`);
    }
    if (m.type === "other") problems.push(`${who} has type '${m.letter}', which is not a file, directory, link, device or FIFO`);
    let linkKey: string | undefined;
    if (m.type === "hardlink") {
      const t = m.target ?? "";
      if (t.startsWith("/")) problems.push(`${who} points to the absolute path ${showName(t)}`);
      else if (components(t).includes("..")) problems.push(`${who} points to ${showName(t)}, which climbs out of the root with ".."`);
      else {
        linkKey = components(t).join("/");
        if (key !== undefined) hardlinks.set(key, linkKey);
      }
    }
    if (m.type === "symlink" && key !== undefined) symlinks.set(key, m.target ?? "");
    keys.push(key);
    linkKeys.push(linkKey);
  });

  // A hard link to a symlink is another symlink with the same target text, read from the hard
  // link's own directory. Names are never removed from these maps: a name that is a symlink at
  // any point of the archive counts as one (stricter than tar's replay, never looser).
  for (const [key, first] of hardlinks) {
    let t: string | undefined = first;
    for (let hops = 0; t !== undefined && hops < MAX_HOPS; hops++) {
      const s = symlinks.get(t);
      if (s !== undefined) {
        if (!symlinks.has(key)) symlinks.set(key, s);
        break;
      }
      t = hardlinks.get(t);
    }
  }

  members.forEach((m, i) => {
    const problems = found[i]!;
    const key = keys[i];
    if (key === undefined) return;
    const under = symlinkAbove(key, symlinks);
    if (under !== undefined) {
      problems.push(`member ${showName(m.name)} lies under ${showName(under)}, which the archive makes a symlink; extracting it would write through the link`);
    }
    const linkKey = linkKeys[i];
    if (m.type === "hardlink" && linkKey !== undefined) {
      const via = symlinkAbove(linkKey, symlinks);
      if (via !== undefined) problems.push(`hard link ${showName(m.name)} points to ${showName(m.target!)} through the symlink ${showName(via)}`);
    }
    // A symlink is checked with its own target (a later member of the same name may differ).
    const target = m.type === "symlink" ? (m.target ?? "") : m.type === "hardlink" ? symlinks.get(key) : undefined;
    if (target !== undefined && escapesRoot(key, target, symlinks)) {
      const shown = `${m.type === "symlink" ? "symlink" : "hard link (to a symlink)"} ${showName(m.name)} -> ${showName(target)}`;
      problems.push(target.startsWith("/") ? `${shown} climbs above "/" with ".."` : `${shown} resolves outside the root`);
    }
  });
  return found.flat();
}

/** The nearest proper prefix of `key` that is a symlink, if any. */
function symlinkAbove(key: string, symlinks: Map<string, string>): string | undefined {
  const parts = key.split("/");
  for (let n = 1; n < parts.length; n++) {
    const prefix = parts.slice(0, n).join("/");
    if (symlinks.has(prefix)) return prefix;
  }
  return undefined;
}

/** Whether the symlink at `key` with `target` resolves above the image root. */
function escapesRoot(key: string, target: string, symlinks: Map<string, string>): boolean {
  const dir = key.split("/").slice(0, -1).filter((c) => c !== "");
  // The link's own last component is not followed here: if the target is itself a symlink, that
  // link is a member too and gets its own check.
  return walk(dir, target, symlinks, { hops: MAX_HOPS }, false) === "escape";
}

/**
 * Resolves `target` from directory `start` inside the image, following the archive's symlinks
 * for every component but (unless `followLast`) the last. Returns the resolved components,
 * "escape" if `..` climbs above the root, or "loop" when the hop budget runs out (the kernel says
 * ELOOP there, so nothing escapes).
 */
function walk(start: string[], target: string, symlinks: Map<string, string>, budget: { hops: number }, followLast: boolean): string[] | "escape" | "loop" {
  let cur = target.startsWith("/") ? [] : [...start];
  const parts = components(target);
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i]!;
    if (part === "..") {
      if (cur.length === 0) return "escape";
      cur.pop();
      continue;
    }
    cur.push(part);
    if (i === parts.length - 1 && !followLast) break;
    const next = symlinks.get(cur.join("/"));
    if (next === undefined) continue;
    if (--budget.hops < 0) return "loop";
    const r = walk(cur.slice(0, -1), next, symlinks, budget, true);
    if (r === "escape" || r === "loop") return r;
    cur = r;
  }
  return cur;
}

/** Offenders shown in the message; the rest are counted (all go into problems[]). */
const SHOWN = 5;

/**
 * Lists the tarball with GNU tar and refuses it (INPUT_INVALID) if any member breaks a rule of
 * findTarEscapes. `scratch` holds the listing file while it is read.
 */
export async function scanTarball(file: string, label: string, scratch: string, ctx: ImportContext): Promise<number> {
  const listing = path.join(scratch, "tar-listing.txt");
  try {
    await execOnImage(
      // prettier-ignore
      ["tar", "--list", "--verbose", "--absolute-names", "--numeric-owner", "--quoting-style=c",
       "--force-local", `--index-file=${listing}`, "--file", file],
      ctx,
      { label, doing: "tar could not list it as a tar archive" },
      { env: { LC_ALL: "C" } },
    );
    const { members, unreadable } = parseTarListing(await readFile(listing, "latin1"));
    if (members.length === 0 && unreadable.length === 0) throw invalidImage(label, "holds no members (an empty archive, or a compressed file that is not a tar archive)");
    const problems = [...unreadable.map((l) => `tar listed a line Kiln cannot read: ${JSON.stringify(l)}`), ...findTarEscapes(members)];
    if (problems.length > 0) {
      const more = problems.length > SHOWN ? `; and ${problems.length - SHOWN} more` : "";
      const advice = "a root tarball must hold relative paths inside the root";
      throw new KilnError("INPUT_INVALID", `base.image: ${label}: ${problems.slice(0, SHOWN).join("; ")}${more}; ${advice}`, {
        problems: problems.slice(0, 100).map((message) => ({ path: "base.image", message: `${label}: ${message}` })),
        hint: "repack it from the root directory: tar --numeric-owner --xattrs --xattrs-include='*' -cpf root.tar -C ROOT .",
      });
    }
    ctx.log.line(`tar safety scan: ${members.length} members, all inside the root`);
    return members.length;
  } finally {
    await rm(listing, { force: true });
  }
}
