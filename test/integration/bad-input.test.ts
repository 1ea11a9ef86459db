// Broken recipes and images through the real CLI: each exits 2 with a message that names the
// field and the fix, never a stack trace, and nothing is written outside the out and cache dirs.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, readdir, rm, stat, writeFile, truncate } from "node:fs/promises";
import path from "node:path";
import { runKiln } from "../helpers/kiln.js";
import { mountsUnder } from "../helpers/host.js";

const HEAD = "apiVersion: kiln/v1\nname: bad\n";
const KERNEL = "kernels: [{ flavor: generic, package: linux-image-amd64 }]\n";

interface Case {
  name: string;
  recipe?: string;
  /** Prepare inputs in the case dir (absolute path given). */
  setup?: (dir: string) => Promise<void> | void;
  args?: string[];
  expect: RegExp;
}

/** A tar built with Python's tarfile (GNU tar refuses to write some of these). */
function pyTar(dir: string, file: string, entries: string): void {
  execFileSync("python3", ["-c", `
import tarfile, io, sys
t = tarfile.open(sys.argv[1], "w")
def add(name, kind="file", target=""):
    i = tarfile.TarInfo(name)
    if kind == "file":
        data = b"x"; i.size = 1; t.addfile(i, io.BytesIO(data)); return
    i.type = tarfile.SYMTYPE if kind == "sym" else tarfile.LNKTYPE
    i.linkname = target; t.addfile(i)
add("etc/hostname")
${entries}
t.close()
`, path.join(dir, file)]);
}

async function smallSquashfs(dir: string, file: string): Promise<void> {
  await mkdir(path.join(dir, "tree/etc"), { recursive: true });
  for (let i = 0; i < 50; i++) await writeFile(path.join(dir, `tree/etc/f${i}`), `file ${i} `.repeat(2000 + i));
  execFileSync("mksquashfs", [path.join(dir, "tree"), path.join(dir, file), "-quiet", "-noappend", "-comp", "gzip"]);
  await rm(path.join(dir, "tree"), { recursive: true });
}

const imageRecipe = (img: string) => `${HEAD}base: { image: ./${img} }\n${KERNEL}`;

const CASES: Case[] = [
  { name: "recipe file missing", args: ["nope.yaml"], expect: /nope\.yaml.*cannot read/ },
  { name: "empty recipe", recipe: "", expect: /empty/ },
  { name: "YAML syntax error", recipe: `${HEAD}packages: [a, b\nbase: {debian: bookworm}\n`, expect: /line \d+, column \d+/ },
  { name: "wrong apiVersion", recipe: "apiVersion: kiln/v2\nname: x\nbase: {debian: bookworm}\n", expect: /apiVersion: "kiln\/v2".*kiln\/v1/ },
  { name: "missing base", recipe: HEAD, expect: /base: required/ },
  { name: "unknown field", recipe: `${HEAD}base: {debian: bookworm}\nkernal: []\n`, expect: /kernal: unknown field; did you mean "kernels"/ },
  { name: "packages not a list", recipe: `${HEAD}base: {debian: bookworm}\npackages: curl\n`, expect: /packages: expected a list/ },
  { name: "bad flavor name", recipe: `${HEAD}base: {debian: bookworm}\nkernels: [{flavor: "RT!", package: linux-image-rt-amd64}]\n`, expect: /kernels\[0\]\.flavor: "RT!"/ },
  { name: "both debian and image", recipe: `${HEAD}base: {debian: bookworm, image: ./x.squashfs}\n`, expect: /base/ },
  { name: "missing file source", recipe: `${HEAD}base: {debian: bookworm}\nfiles: [{path: /etc/motd, source: ./motd.txt}]\n${KERNEL}`, expect: /files\[0\]\.source: .*motd\.txt does not exist/ },
  { name: "relative file path", recipe: `${HEAD}base: {debian: bookworm}\nfiles: [{path: etc/motd, content: x}]\n`, expect: /files\[0\]\.path/ },
  { name: "bad mode", recipe: `${HEAD}base: {debian: bookworm}\nfiles: [{path: /etc/motd, content: x, mode: "0888"}]\n`, expect: /files\[0\]\.mode/ },
  { name: "upgrade without repositories", recipe: `${HEAD}base: {debian: bookworm}\nupgrade: [tmux]\n`, expect: /upgrade.*repositor/ },
  { name: "verify boot without kernels", recipe: `${HEAD}base: {debian: bookworm}\nverify: boot\n`, expect: /kernel/ },
  { name: "image missing", recipe: imageRecipe("gone.squashfs"), expect: /base\.image: .*gone\.squashfs does not exist/ },
  { name: "image is a directory", recipe: imageRecipe("adir"), setup: (d) => mkdir(path.join(d, "adir")).then(() => {}), expect: /base\.image/ },
  { name: "image is empty", recipe: imageRecipe("empty.img"), setup: (d) => writeFile(path.join(d, "empty.img"), ""), expect: /base\.image: .*empty/ },
  { name: "image is garbage", recipe: imageRecipe("junk.img"), setup: (d) => writeFile(path.join(d, "junk.img"), Buffer.alloc(8192, 0x5a)), expect: /base\.image: .*not a squashfs, qcow2, raw/ },
  {
    name: "truncated squashfs",
    recipe: imageRecipe("cut.squashfs"),
    setup: async (d) => {
      await smallSquashfs(d, "cut.squashfs");
      await truncate(path.join(d, "cut.squashfs"), Math.floor((await stat(path.join(d, "cut.squashfs"))).size / 2));
    },
    expect: /cut\.squashfs/,
  },
  { name: "tarball with ../ member", recipe: imageRecipe("dotdot.tar"), setup: (d) => pyTar(d, "dotdot.tar", `add("../etc/passwd")`), expect: /"\.\.\/etc\/passwd".*\.\./ },
  { name: "tarball with absolute member", recipe: imageRecipe("abs.tar"), setup: (d) => pyTar(d, "abs.tar", `add("/etc/shadow")`), expect: /\/etc\/shadow/ },
  { name: "tarball with escaping relative symlink", recipe: imageRecipe("sym.tar"), setup: (d) => pyTar(d, "sym.tar", `add("etc/escape", "sym", "../../../../etc/passwd")`), expect: /etc\/escape/ },
  { name: "tarball with absolute symlink pointing out", recipe: imageRecipe("abssym.tar"), setup: (d) => pyTar(d, "abssym.tar", `add("etc/out", "sym", "/../../../../root")`), expect: /etc\/out/ },
  { name: "tarball with hard link out of the root", recipe: imageRecipe("hard.tar"), setup: (d) => pyTar(d, "hard.tar", `add("etc/h", "hard", "../../etc/passwd")`), expect: /etc\/h/ },
  {
    name: "qcow2 with a backing file",
    recipe: imageRecipe("child.qcow2"),
    setup: (d) => {
      execFileSync("qemu-img", ["create", "-q", "-f", "qcow2", path.join(d, "base.qcow2"), "16M"]);
      execFileSync("qemu-img", ["create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", path.join(d, "child.qcow2")]);
    },
    expect: /backing/,
  },
  {
    name: "out dir that is not Kiln's",
    recipe: `${HEAD}base: {debian: bookworm}\n${KERNEL}`,
    setup: async (d) => {
      await mkdir(path.join(d, "out"));
      await writeFile(path.join(d, "out", "precious.txt"), "keep me");
    },
    expect: /--out .*not a Kiln out dir/,
  },
];

describe("bad input gets exit 2, a clear message and no side effects", () => {
  let root: string;
  before(async () => {
    root = await mkdtemp("/var/tmp/kiln-bad-");
  });
  after(async () => {
    assert.deepEqual(await mountsUnder(root), []);
    await rm(root, { recursive: true, force: true });
  });

  test("there are at least 20 cases", () => assert.ok(CASES.length >= 20));

  for (const c of CASES) {
    test(c.name, async () => {
      const dir = path.join(root, c.name.replace(/\W+/g, "-"));
      await mkdir(dir, { recursive: true });
      if (c.recipe !== undefined) await writeFile(path.join(dir, "recipe.yaml"), c.recipe);
      await c.setup?.(dir);
      const before = await listTree(dir);
      const r = await runKiln(["build", ...(c.args ?? ["recipe.yaml"]), "--out", "out", "--cache-dir", "cache", "--no-verify"], { cwd: dir });
      assert.equal(r.code, 2, `exit ${r.code}\n${r.stderr}\n${r.stdout}`);
      assert.match(r.stderr, c.expect);
      assert.match(r.stderr, /^kiln: error: /m);
      assert.doesNotMatch(r.stderr, /\n\s+at \S+ \(/, "no stack trace");
      const added = (await listTree(dir)).filter((p) => !before.includes(p));
      assert.deepEqual(added.filter((p) => !/^(out|cache)(\/|$)/.test(p)), [], "nothing written outside out/ and cache/");
      if (c.name === "out dir that is not Kiln's") assert.ok(before.includes("out/precious.txt") && (await listTree(dir)).includes("out/precious.txt"));
    });
  }
});

async function listTree(dir: string, rel = ""): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(path.join(dir, rel), { withFileTypes: true })) {
    const p = rel ? `${rel}/${e.name}` : e.name;
    out.push(p);
    if (e.isDirectory()) out.push(...(await listTree(dir, p)));
  }
  return out;
}
