/**
 * Every host command that Kiln's code and tests run must come from a package scripts/setup.sh
 * installs, or from Debian's base system (Essential: yes, or Priority: required, which every
 * Debian 12 machine has). A tool installed by hand on a developer's machine otherwise passes there
 * and fails on a fresh CI machine with "command not found" (exit 127), as `cpio` once did.
 *
 * The commands are found by reading the sources: the program named by each host exec call
 * (`exec`, `capture`, `ctx.exec`, node's child_process calls), each command of an `sh -c` string,
 * and the tools of src/host/tools.ts. Commands run inside an image (`chroot ROOT cmd`, a recipe's
 * scripts) are the image's business, not the host's, and are not read.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync, readdirSync, realpathSync, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { TOOL_PACKAGES } from "../../src/host/tools.js";

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");

/** Not Debian packages here: the runtime itself, which the README asks for before setup.sh. */
const RUNTIME = new Set(["node", "npm", "npx"]);

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(p);
    return /\.ts$/.test(e.name) ? [p] : [];
  });
}

/** The first word of each command in a shell string ("zstd -dc x | cpio -t" → zstd, cpio). */
function shellCommands(script: string): string[] {
  return script
    .split(/\|\||&&|[|;\n]/)
    .map((part) => part.trim().replace(/^(?:[A-Z_]+=\S*\s+)*/, "").split(/\s+/)[0] ?? "")
    .filter((w) => /^[a-z][\w.+-]*$/.test(w) && !["true", "false", "exit", "cd", "echo", "test", "set"].includes(w));
}

function hostCommands(): Map<string, string> {
  const found = new Map<string, string>(); // command → where it was first seen
  const add = (cmd: string, where: string) => found.has(cmd) || found.set(cmd, where);
  const call = /\b(?:exec|capture|execFileSync|execFile|spawnSync|spawn|execSync)\(\s*\[?\s*["'`]([a-z][\w.+-]*)["'`]/g;
  const shellC = /["'`](?:ba)?sh["'`],\s*\[\s*["'`]-c["'`],\s*(["'`])((?:(?!\1)[^\\]|\\.)*)\1/g;
  for (const file of [...sourceFiles(path.join(repo, "src")), ...sourceFiles(path.join(repo, "test")), ...sourceFiles(path.join(repo, "bench"))]) {
    const text = readFileSync(file, "utf8");
    const rel = path.relative(repo, file);
    for (const m of text.matchAll(call)) add(m[1]!, rel);
    for (const m of text.matchAll(shellC)) for (const c of shellCommands(m[2]!)) add(c, `${rel} (sh -c)`);
  }
  for (const tool of Object.keys(TOOL_PACKAGES)) add(tool, "src/host/tools.ts");
  return found;
}

function setupPackages(): Set<string> {
  const script = readFileSync(path.join(repo, "scripts/setup.sh"), "utf8");
  const list = /^PACKAGES=\(([\s\S]*?)^\)/m.exec(script);
  assert.ok(list, "scripts/setup.sh has a PACKAGES=( … ) list");
  return new Set(list[1]!.split("\n").flatMap((l) => l.replace(/#.*/, "").trim().split(/\s+/)).filter(Boolean));
}

const SEARCH = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"];

function locate(cmd: string): string | undefined {
  for (const dir of SEARCH) {
    try {
      if (statSync(`${dir}/${cmd}`).isFile()) return `${dir}/${cmd}`;
    } catch {
      // keep looking
    }
  }
  return undefined;
}

function owningPackage(file: string): string | undefined {
  // The name as called first (python3 → python3-minimal), then the file it links to (usrmerge, alternatives).
  const real = realpathSync(file);
  for (const candidate of [file, file.replace(/^\/usr\//, "/"), real, real.replace(/^\/usr\//, "/")]) {
    try {
      const lines = execFileSync("dpkg-query", ["-S", candidate], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).split("\n");
      // "diversion by dash from: /bin/sh" lines name a diversion, not the owner
      const owner = lines.find((l) => l.includes(": ") && !l.startsWith("diversion by"));
      if (owner) return owner.split(":")[0]!.split(",")[0]!.trim();
    } catch {
      // not this spelling (usrmerge) — try the next
    }
  }
  return undefined;
}

function isBaseSystem(pkg: string): boolean {
  const out = execFileSync("dpkg-query", ["-W", "-f", "${Essential} ${Priority}", pkg], { encoding: "utf8" });
  return out.startsWith("yes") || out.endsWith("required");
}

test("shellCommands finds every command of a pipeline", () => {
  assert.deepEqual(shellCommands("zstd -dc 'x' | cpio -t 2>/dev/null"), ["zstd", "cpio"]);
  assert.deepEqual(shellCommands("pgrep -fa 'gpg-agent' || true"), ["pgrep"]);
  assert.deepEqual(shellCommands("LC_ALL=C sort a && uniq b; echo done"), ["sort", "uniq"]);
});

test("every host command the code and tests run is installed by scripts/setup.sh or is in Debian's base system", () => {
  const listed = setupPackages();
  const commands = hostCommands();
  assert.ok(commands.has("mksquashfs") && commands.has("cpio"), "the scan finds the commands it should (mksquashfs, cpio)");
  const problems: string[] = [];
  for (const [cmd, where] of [...commands].sort()) {
    if (RUNTIME.has(cmd)) continue;
    const declared = (TOOL_PACKAGES as Record<string, string>)[cmd];
    const file = locate(cmd);
    const pkg = declared ?? (file ? owningPackage(file) : undefined);
    if (!pkg) {
      problems.push(`${cmd} (run in ${where}) is not installed: add the package that provides it to scripts/setup.sh`);
      continue;
    }
    if (listed.has(pkg)) continue;
    let base = false;
    try {
      base = isBaseSystem(pkg);
    } catch {
      // not installed at all: reported below
    }
    if (!base) problems.push(`${cmd} (run in ${where}) comes from ${pkg}, which scripts/setup.sh does not install and is not in Debian's base system: add "${pkg}" to PACKAGES`);
  }
  assert.deepEqual(problems, []);
});
