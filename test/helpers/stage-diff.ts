/**
 * Per-stage diff harness (the shape of osbuild's stage tests): run ONE layer stage on a root,
 * exactly as the engine runs it — the root is an overlay whose upper dir becomes the stage's
 * layer — and read what the stage added, changed and removed from that upper dir.
 *
 * A test compares the diff with an expected list kept next to it (test/integration/stage-diff/),
 * one change a line:
 *
 *     + /etc/sysctl.d/90-kiln.conf        added (a directory ends in "/")
 *     ~ /etc/machine-id                   changed: type, mode, owner, content or link target
 *     - /etc/ssh/ssh_host_*_key           removed (an overlay whiteout)
 *     +? /var/log/**                      "?" : may happen, need not
 *
 * Paths may use globs: `*` and `?` stay within a path segment, `**` is any run of characters,
 * `[SK]` a character class. Every
 * change must match a line of its sign, and every line without "?" must match a change; a
 * failure prints the unexpected and the missing changes, then the whole diff to paste.
 *
 * A file that is only copied up (a directory a new file lands in, a file rewritten with the same
 * bytes and metadata) is not a change: the image reads the same.
 */
import { createHash } from "node:crypto";
import { copyFile, lstat, mkdir, readdir, readFile, readlink, writeFile } from "node:fs/promises";
import type { Stats } from "node:fs";
import path from "node:path";
import { runLayerStage } from "../../src/engine/run-stage.js";
import { nullLog, type LogSink } from "../../src/host/exec.js";
import { mountOverlay } from "../../src/host/mount.js";
import { Scope } from "../../src/host/scope.js";
import { createWorkDir } from "../../src/host/workdir.js";
import type { LayerStage } from "../../src/stages/stage.js";
import type { z } from "zod";

export type Change = { sign: "+" | "~" | "-"; path: string; detail?: string };

export interface StageRun {
  /** What the stage did to the root, sorted by path. */
  changes: Change[];
  /** The stage's outputs dir (a flavor's boot-kernel …) and facts. */
  outputs: string;
  facts: Record<string, unknown>;
  /** The stage's log lines. */
  log: string[];
  /** changes, one a line, as an expected list writes them. */
  changesFile: string;
}

/**
 * Runs `stage` with `options` on an overlay over `lower` (host dirs, top first) in `dir` (made
 * here; its upper/ and outputs/ stay for the test to read). Nothing stays mounted afterwards.
 */
export async function runStageOnRoot<S extends z.ZodType>(stage: LayerStage<S>, options: z.input<S>, lower: string[], dir: string, opts: { aptArchives: string }): Promise<StageRun> {
  const upper = path.join(dir, "upper");
  const outputs = path.join(dir, "outputs");
  await mkdir(dir, { recursive: true });
  const lines: string[] = [];
  const log: LogSink = { line: (l) => void lines.push(l) };
  let facts: Record<string, unknown>;
  {
    await using scope = new Scope();
    const work = scope.use(await createWorkDir(dir, nullLog));
    const root = scope.use(await mountOverlay(path.join(dir, "mnt"), { lower, upper, work: path.join(dir, "ovl") }, { log, workDir: work.path })).path;
    const ac = new AbortController();
    facts = await runLayerStage(stage, options, root, upper, { name: stage.kind, log, signal: ac.signal, workDir: work.path, outputs, aptArchives: opts.aptArchives });
  }
  const changes = await layerDiff(upper, lower);
  // The whole diff, to read or to paste into an expected list.
  await writeFile(path.join(dir, "changes.txt"), changes.map((c) => show(c) + "\n").join(""));
  return { changes, outputs, facts, log: lines, changesFile: path.join(dir, "changes.txt") };
}

/** The changes an overlay upper dir makes to its lower dirs (top first). */
export async function layerDiff(upper: string, lower: string[]): Promise<Change[]> {
  const changes: Change[] = [];
  const walk = async (rel: string): Promise<void> => {
    for (const name of (await readdir(path.join(upper, rel))).sort()) {
      const p = path.posix.join(rel, name);
      const st = await lstat(path.join(upper, p));
      if (st.isCharacterDevice() && st.rdev === 0) {
        changes.push({ sign: "-", path: "/" + p });
        continue;
      }
      const below = await findBelow(lower, p);
      if (!below) {
        changes.push({ sign: "+", path: "/" + p + (st.isDirectory() ? "/" : "") });
      } else {
        const differs = await difference(path.join(below.dir, p), below.st, path.join(upper, p), st);
        if (differs) changes.push({ sign: "~", path: "/" + p + (st.isDirectory() ? "/" : ""), detail: differs });
      }
      if (st.isDirectory()) await walk(p);
    }
  };
  await walk("");
  return changes;
}

async function findBelow(lower: string[], rel: string): Promise<{ dir: string; st: Stats } | undefined> {
  for (const dir of lower) {
    const st = await lstat(path.join(dir, rel)).catch(() => undefined);
    if (!st) continue;
    if (st.isCharacterDevice() && st.rdev === 0) return undefined; // removed by a lower layer
    return { dir, st };
  }
  return undefined;
}

const kindOf = (st: Stats) => (st.isDirectory() ? "dir" : st.isSymbolicLink() ? "symlink" : st.isFile() ? "file" : "special");

/** What differs between a lower entry and its upper copy, or "" when the image reads the same. */
async function difference(a: string, sa: Stats, b: string, sb: Stats): Promise<string> {
  if (kindOf(sa) !== kindOf(sb)) return `${kindOf(sa)} → ${kindOf(sb)}`;
  const d: string[] = [];
  if ((sa.mode & 0o7777) !== (sb.mode & 0o7777) && !sa.isSymbolicLink()) d.push(`mode ${(sa.mode & 0o7777).toString(8)} → ${(sb.mode & 0o7777).toString(8)}`);
  if (sa.uid !== sb.uid || sa.gid !== sb.gid) d.push(`owner ${sa.uid}:${sa.gid} → ${sb.uid}:${sb.gid}`);
  if (sa.isSymbolicLink() && (await readlink(a)) !== (await readlink(b))) d.push("target");
  if (sa.isFile() && (sa.size !== sb.size || (await sha256(a)) !== (await sha256(b)))) d.push("content");
  return d.join(", ");
}

async function sha256(file: string): Promise<string> {
  return createHash("sha256").update(await readFile(file)).digest("hex");
}

interface Expectation {
  sign: Change["sign"];
  optional: boolean;
  pattern: string;
  re: RegExp;
}

function globToRegExp(glob: string): RegExp {
  let re = "";
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === "*" && glob[i + 1] === "*") {
      re += ".*";
      i++;
    } else if (c === "*") re += "[^/]*";
    else if (c === "?") re += "[^/]";
    else if (c === "[" && glob.indexOf("]", i) > i) {
      re += glob.slice(i, glob.indexOf("]", i) + 1); // a character class, as in sh
      i = glob.indexOf("]", i);
    }
    else re += c.replace(/[.+^${}()|[\]\\]/g, "\\$&");
  }
  return new RegExp(`^${re}$`);
}

export function parseExpected(text: string): Expectation[] {
  const out: Expectation[] = [];
  for (const [i, raw] of text.split("\n").entries()) {
    const line = raw.replace(/#.*$/, "").trim();
    if (!line) continue;
    const m = /^([+~-])(\?)?\s+(\/\S*)$/.exec(line);
    if (!m) throw new Error(`expected list, line ${i + 1}: "${raw}" is not "+|~|- /path" (optionally "+?")`);
    out.push({ sign: m[1] as Change["sign"], optional: m[2] === "?", pattern: m[3]!, re: globToRegExp(m[3]!) });
  }
  return out;
}

const show = (c: Change) => `${c.sign} ${c.path}${c.detail ? `   (${c.detail})` : ""}`;

/**
 * Compares a stage's changes with an expected list; returns "" when they match, else a report
 * of the unexpected and missing changes and the whole diff.
 */
export function compareChanges(changes: Change[], expected: Expectation[]): string {
  const unexpected = changes.filter((c) => !expected.some((e) => e.sign === c.sign && e.re.test(c.path)));
  const missing = expected.filter((e) => !e.optional && !changes.some((c) => c.sign === e.sign && e.re.test(c.path)));
  if (unexpected.length === 0 && missing.length === 0) return "";
  const parts: string[] = [];
  if (unexpected.length) parts.push("unexpected (the stage did this, the list does not allow it):", ...unexpected.map((c) => "  " + show(c)));
  if (missing.length) parts.push("missing (the list expects this, the stage did not do it):", ...missing.map((e) => `  ${e.sign}${e.optional ? "?" : ""} ${e.pattern}`));
  parts.push(`the whole diff (${changes.length} changes):`, ...changes.slice(0, 400).map((c) => "  " + show(c)));
  if (changes.length > 400) parts.push(`  … ${changes.length - 400} more`);
  return parts.join("\n");
}

/** Throws a readable added/changed/removed report when `changes` do not match the list in `file`. */
export async function assertChanges(run: Pick<StageRun, "changes" | "changesFile">, file: string): Promise<void> {
  const report = compareChanges(run.changes, parseExpected(await readFile(file, "utf8")));
  if (!report) return;
  // Beside the list, ignored by git: `diff` it with the list, or copy it over after reading it.
  await copyFile(run.changesFile, `${file}.actual`);
  throw new Error(`stage diff does not match ${file} (the whole diff: ${file}.actual)\n${report}`);
}
