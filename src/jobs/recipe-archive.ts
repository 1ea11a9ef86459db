/**
 * Recipe archives: the `recipe.tar.gz` a recipe record links (bucket `ims`,
 * `recipes/<id>/<upload id>/recipe.tar.gz`). The API checks one when it is uploaded and the worker unpacks it
 * before a build; both go through unpackRecipeArchive, which refuses anything hostile before a
 * byte lands in the target directory:
 *  - the compressed size is capped by the caller (the API counts while it receives);
 *  - gzip is inflated here, counting, so a gzip bomb stops at the unpacked limit instead of
 *    filling the disk; plain tar is accepted too;
 *  - GNU tar lists the members (the same reading the extraction does; see
 *    stages/import/tar-safety.ts for why) and every member must be a regular file, directory or a
 *    link that stays inside: no absolute names, no `..`, no symlink with an absolute target (it
 *    would name a file of the worker's own host when the recipe loader follows it), no device
 *    nodes or FIFOs; at most MAX_MEMBERS members;
 *  - then tar extracts without owners or permissions from the archive.
 */
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, open, readFile, rm, stat } from "node:fs/promises";
import path from "node:path";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGunzip } from "node:zlib";
import { KilnError, type Problem } from "../errors.js";
import { exec } from "../host/exec.js";
import { findTarEscapes, parseTarListing, showName } from "../stages/import/tar-safety.js";

export const MAX_MEMBERS = 10_000;
/** The file at the archive's root that makes it a Kiln recipe. */
export const RECIPE_FILE = "recipe.yaml";

export interface UnpackLimits {
  /** Largest unpacked (tar) size in bytes. */
  maxUnpacked: number;
}

export interface UnpackedRecipe {
  dir: string;
  members: number;
  bytes: number;
  /** Whether recipe.yaml is a regular file at the root. */
  hasRecipeFile: boolean;
}

function invalid(message: string, problems: Problem[] = []): KilnError {
  return new KilnError("REQUEST_INVALID", `recipe archive: ${message}`, { problems: problems.length ? problems : [{ path: "archive", message }] });
}

/** Inflates (if gzip) `archive` into `tarFile`, stopping at `limit` bytes. */
async function inflate(archive: string, tarFile: string, limit: number): Promise<number> {
  const fh = await open(archive, "r");
  const head = Buffer.alloc(512);
  const { bytesRead } = await fh.read(head, 0, 512, 0);
  await fh.close();
  const gzip = bytesRead >= 2 && head[0] === 0x1f && head[1] === 0x8b;
  const ustar = bytesRead >= 262 && head.subarray(257, 262).toString("latin1") === "ustar";
  if (!gzip && !ustar) throw invalid("is neither gzip nor tar; pack the recipe folder with tar -czf recipe.tar.gz -C DIR .");
  let size = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _enc, done) {
      size += chunk.length;
      if (size > limit) done(new KilnError("TOO_LARGE", `recipe archive: unpacks to more than ${limit} bytes; a recipe archive holds a recipe and the files it references`));
      else done(null, chunk);
    },
  });
  try {
    if (gzip) await pipeline(createReadStream(archive), createGunzip(), counter, createWriteStream(tarFile));
    else await pipeline(createReadStream(archive), counter, createWriteStream(tarFile));
  } catch (e) {
    if (e instanceof KilnError) throw e;
    throw invalid(`cannot be inflated (${(e as Error).message}); is it a complete .tar.gz?`);
  }
  return size;
}

/** Sizes of regular files from the verbose listing (3rd field: size, or major,minor for devices). */
function listedBytes(listing: string): number {
  let total = 0;
  for (const line of listing.split("\n")) {
    if (line[0] !== "-" && line[0] !== "C") continue;
    const size = Number(line.slice(0, line.indexOf('"')).trim().split(/\s+/)[2]);
    if (Number.isFinite(size)) total += size;
  }
  return total;
}

/**
 * Checks and unpacks a recipe archive into `dest` (created, must not exist or be empty). On any
 * refusal nothing is left in `dest`. `scratch` holds the inflated tar while it is checked.
 */
export async function unpackRecipeArchive(archive: string, dest: string, scratch: string, limits: UnpackLimits): Promise<UnpackedRecipe> {
  await mkdir(scratch, { recursive: true });
  const tarFile = path.join(scratch, "recipe.tar");
  const listFile = path.join(scratch, "recipe.list");
  try {
    await inflate(archive, tarFile, limits.maxUnpacked);
    try {
      await exec(
        // prettier-ignore
        ["tar", "--list", "--verbose", "--absolute-names", "--numeric-owner", "--quoting-style=c",
         "--force-local", `--index-file=${listFile}`, "--file", tarFile],
        { env: { LC_ALL: "C" } },
      );
    } catch (e) {
      throw invalid(`tar cannot read it (${(e as Error).message.split(" · ").slice(-1)[0]})`);
    }
    const listing = await readFile(listFile, "latin1");
    const { members, unreadable } = parseTarListing(listing);
    if (members.length === 0) throw invalid("holds no files");
    if (members.length > MAX_MEMBERS) throw new KilnError("TOO_LARGE", `recipe archive: holds ${members.length} members; at most ${MAX_MEMBERS}`);
    const bytes = listedBytes(listing);
    if (bytes > limits.maxUnpacked) throw new KilnError("TOO_LARGE", `recipe archive: its files add up to ${bytes} bytes; at most ${limits.maxUnpacked}`);
    const problems: string[] = [...unreadable.map((l) => `tar listed a line Kiln cannot read: ${JSON.stringify(l)}`), ...findTarEscapes(members)];
    for (const m of members) {
      if (m.type === "char" || m.type === "block" || m.type === "fifo") problems.push(`member ${showName(m.name)} is a device node or FIFO; a recipe holds files, directories and links`);
      if (m.type === "symlink" && (m.target ?? "").startsWith("/")) problems.push(`symlink ${showName(m.name)} -> ${showName(m.target!)} points outside the recipe (absolute target)`);
    }
    if (problems.length > 0) {
      const shown = problems.slice(0, 5).join("; ") + (problems.length > 5 ? `; and ${problems.length - 5} more` : "");
      throw invalid(`${shown}; a recipe archive holds relative paths inside itself`, problems.slice(0, 100).map((message) => ({ path: "archive", message })));
    }
    const hasRecipeFile = members.some((m) => (m.type === "file") && m.name.replace(/^(\.\/)+/, "") === RECIPE_FILE);
    await rm(dest, { recursive: true, force: true });
    await mkdir(dest, { recursive: true });
    // prettier-ignore
    await exec(["tar", "--extract", "--no-same-owner", "--no-same-permissions", "--no-overwrite-dir",
                "--force-local", "--file", tarFile, "--directory", dest], { env: { LC_ALL: "C" } });
    return { dir: dest, members: members.length, bytes, hasRecipeFile };
  } catch (e) {
    await rm(dest, { recursive: true, force: true });
    throw e;
  } finally {
    await rm(tarFile, { force: true });
    await rm(listFile, { force: true });
  }
}

/** The size of a file, for messages. */
export async function fileSize(file: string): Promise<number> {
  return (await stat(file)).size;
}
