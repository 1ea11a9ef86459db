/**
 * bootstrap: a Debian root from the archive with mmdebstrap (docs/architecture.md#bootstrap). The apt archive
 * cache is shared with mmdebstrap through the stage's own archives dir (hard links to the shared
 * cache, host/apt-archives.ts), so each .deb downloads once across builds. A setup hook hard-links
 * that dir's .debs into the new root's /var/cache/apt/archives and a customize hook links the
 * .debs apt fetched back into it; the new ones go into the shared cache when the stage ends, as
 * with a chroot session. Not mmdebstrap's sync-in/sync-out hooks: they copy every file through
 * tar, the whole shared cache (every kernel flavor's .debs too, 313 MB in bench/build) in and out
 * again on each bootstrap, which cost 10+ s; and sync-out into a dir another bootstrap writes
 * fails ("File exists"). The root, the session dir and the work dir are on one filesystem, so the
 * links always work. mmdebstrap copies the host's hostname and resolv.conf into the root; they are
 * reset here so no host detail is baked into an image.
 *
 * The apt lists mmdebstrap fetched are kept for the layers built on this one (docs/cache.md#apt-lists):
 * the `packages` layer's `apt update` then fetches only the release files.
 *
 * It also fixes the build's SOURCE_DATE_EPOCH (docs/reproducible.md): the recipe's `epoch`, else
 * the newest Date of the InRelease (Release) files of its apt lines (the suite, -updates,
 * -security), fetched first so that mmdebstrap already runs with it. The epoch is a fact of this layer: every later stage of the
 * build reads it from here, so a cached bootstrap and the stages on it agree on it.
 */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { z } from "zod";
import { KilnError } from "../errors.js";
import { openSessionArchives } from "../host/apt-archives.js";
import { debianArchiveUri, debianLinesFor } from "../host/apt-sources.js";
import { emptyAptLists, LOCK_PINS } from "../host/chroot.js";
import { releaseEpoch } from "./reproducible.js";
import { defineLayerStage, type LayerContext } from "./stage.js";

const BootstrapOptions = z.strictObject({
  suite: z.string(),
  variant: z.string(),
  /** Complete apt lines (`deb URI SUITE COMPONENTS`); the first is the primary mirror. */
  aptLines: z.array(z.string()).min(1),
  /** The recipe's epoch, or "release": the newest Release date of the apt lines at bootstrap time. */
  epoch: z.union([z.int().min(0), z.literal("release")]),
});
export type BootstrapOptions = z.output<typeof BootstrapOptions>;

const PIN_FILE = path.basename(LOCK_PINS);

export const bootstrap = defineLayerStage({
  kind: "bootstrap",
  summary: "Bootstrap a Debian root filesystem with mmdebstrap",
  options: BootstrapOptions,
  plan({ recipe: r, host, file }) {
    if (!("debian" in r.base)) return [];
    const b = r.base;
    const aptLines = b.mirror ? [`deb ${b.mirror} ${b.debian} ${b.components.join(" ")}`] : debianLinesFor(b.debian, b.components, host.hostSources);
    if (aptLines.length === 0) {
      const uri = debianArchiveUri(host.hostSources);
      if (!uri) {
        throw new KilnError("RECIPE_INVALID", `${file}: base.mirror: this host has no Debian apt source to default to; set base.mirror, e.g. http://deb.debian.org/debian`);
      }
      aptLines.push(`deb ${uri} ${b.debian} ${b.components.join(" ")}`);
    }
    return [{ options: { suite: b.debian, variant: b.variant, aptLines, epoch: r.epoch ?? "release" } }];
  },
  facts: z.object({ epoch: z.int().min(0) }),
  base: true,
  tools: ["mmdebstrap"],
  async run(ctx, o) {
    const archives = await openSessionArchives(ctx.aptArchives, { log: ctx.log, signal: ctx.signal, workDir: ctx.workDir });
    try {
      await bootstrapInto(ctx, o, archives.path);
    } finally {
      await archives.release(); // links in the .debs it fetched
    }
  },
});

async function bootstrapInto(ctx: LayerContext, o: BootstrapOptions, cache: string): Promise<void> {
  const epoch = o.epoch === "release" ? Math.max(...(await Promise.all(o.aptLines.map((l) => archiveEpoch(ctx, l))))) : o.epoch;
  ctx.facts.epoch = epoch;
  ctx.log.line(`SOURCE_DATE_EPOCH=${epoch} (${new Date(epoch * 1000).toISOString()}, ${o.epoch === "release" ? "the archive's Release date" : "the recipe's epoch"})`);
  // A locked build pins every version of the lock (docs/lock.md) from the start: apt's
  // preferences steer mmdebstrap's choice of the essential set and of every package after it.
  const pins: string[] = [];
  if (ctx.aptPins !== undefined) {
    const dir = await mkdtemp(path.join(ctx.workDir, "lock-pins-"));
    await writeFile(path.join(dir, PIN_FILE), ctx.aptPins);
    pins.push("--setup-hook=mkdir -p \"$1\"/etc/apt/preferences.d", `--setup-hook=copy-in ${path.join(dir, PIN_FILE)} /etc/apt/preferences.d/`);
  }
  // prettier-ignore
  await ctx.exec([
    "mmdebstrap", "--mode=root", `--variant=${o.variant}`,
    "--aptopt=Acquire::Retries \"3\";",
    "--skip=essential/unlink",
    // The lists are read for kiln.lock (the suite and .deb digest of each package), then emptied below.
    "--skip=cleanup/apt/lists",
    "--setup-hook=mkdir -p \"$1\"/var/cache/apt/archives/",
    ...pins,
    // Links, not copies (see above); a .deb already in the session dir is left as it is.
    `--setup-hook=cp -al ${shellWord(cache)}/. "$1"/var/cache/apt/archives/`,
    `--customize-hook=for f in "$1"/var/cache/apt/archives/*.deb; do [ -f "$f" ] || continue; [ -e ${shellWord(cache)}/"\${f##*/}" ] || ln "$f" ${shellWord(cache)}/; done`,
    o.suite, ctx.root, ...o.aptLines,
  ], { env: { ...ctx.env, SOURCE_DATE_EPOCH: String(epoch) } });
  await ctx.recordAptLists?.(path.join(ctx.root, "var/lib/apt/lists"));
  await ctx.keepAptLists?.(path.join(ctx.root, "var/lib/apt/lists"));
  await emptyAptLists(ctx.root);
  await rm(path.join(ctx.root, "etc/apt/preferences.d", PIN_FILE), { force: true });
  // The root was made by us just now, so these are plain files, not image symlinks.
  await writeFile(path.join(ctx.root, "etc/hostname"), "localhost\n");
  await rm(path.join(ctx.root, "etc/resolv.conf"), { force: true });
  await writeFile(path.join(ctx.root, "etc/resolv.conf"), "");
}

/** `s` as one word of a POSIX shell command line. */
function shellWord(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}

/**
 * The Date of `dists/SUITE/InRelease` (else `Release`) of an apt line, fetched with
 * apt's own downloader (file:, http:, https:, the proxy variables) into the work dir. Its
 * signature is not checked here: the date only names the build's time; mmdebstrap fetches and
 * verifies the archive itself.
 */
async function archiveEpoch(ctx: LayerContext, aptLine: string): Promise<number> {
  const [uri, suite] = aptLine.replace(/^deb\s+(\[[^\]]*\]\s+)?/, "").split(/\s+/);
  const tried: string[] = [];
  for (const name of ["InRelease", "Release"]) {
    const url = `${uri!.replace(/\/+$/, "")}/dists/${suite}/${name}`;
    const file = path.join(ctx.workDir, `bootstrap-${suite}-${name}`.replace(/[^\w.-]/g, "_"));
    // Into Kiln's own work dir, which apt's unprivileged _apt user cannot write: as root, said so, not warned about.
    const r = await ctx.exec(["/usr/lib/apt/apt-helper", "-o", "APT::Sandbox::User=root", "download-file", url, file], { env: ctx.env, okCodes: [0, 100] });
    const epoch = r.code === 0 ? releaseEpoch(await readFile(file, "utf8")) : undefined;
    await rm(file, { force: true });
    if (epoch !== undefined) return epoch;
    tried.push(url);
  }
  throw new KilnError("STAGE_FAILED", `bootstrap: no Release date for SOURCE_DATE_EPOCH at ${tried.join(" or ")}`, {
    hint: "set the recipe's epoch (seconds since 1970) or check base.mirror",
  });
}
