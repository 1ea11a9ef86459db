/**
 * `kiln ims …`: the client side of the IMS API, mirroring `cray ims` (verbs list, describe,
 * create, update, delete, deleteall; the same option names; remote-build-nodes and their status
 * too), with `--json` or a table, plus helpers cray lacks: `recipes upload DIR`, `images download
 * ID`, `images urls ID`, `jobs wait|log|cancel|end-session ID`.
 * Server and token come from --url/--token or KILN_URL/KILN_TOKEN.
 */
import { createHash } from "node:crypto";
import { createWriteStream } from "node:fs";
import { mkdir, readFile, rename, rm, stat } from "node:fs/promises";
import path from "node:path";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { KilnError } from "../../errors.js";
import { exec } from "../../host/exec.js";
import { uploadedKindOf } from "../../artifacts/types.js";
import { artifactApiPath, ImsClient } from "../../client/ims-client.js";
import { renderRecipeTemplate } from "../../jobs/recipe-template.js";
import type { PackageDiff } from "../../catalog/records.js";
import { formatPackageDiff } from "../../jobs/package-diff.js";
import type { CommandIo } from "../io.js";

export interface ClientFlags {
  url?: string;
  token?: string;
  json?: boolean;
}

export function clientOf(f: ClientFlags): ImsClient {
  const url = f.url ?? process.env.KILN_URL;
  if (!url) throw new KilnError("USAGE", "no service URL: give --url http://host:port or set KILN_URL");
  return new ImsClient({ url, token: f.token ?? process.env.KILN_TOKEN });
}

type Row = Record<string, unknown>;

/** Columns of the table view per resource. */
export const COLUMNS: Record<string, string[]> = {
  recipes: ["id", "name", "recipe_type", "linux_distribution", "arch", "link.path", "created"],
  images: ["id", "name", "arch", "link.path", "created"],
  "public-keys": ["id", "name", "created"],
  jobs: ["id", "job_type", "arch", "status", "image_root_archive_name", "resultant_image_id", "created"],
  "deleted/recipes": ["id", "name", "recipe_type", "link.path", "deleted"],
  "deleted/images": ["id", "name", "arch", "link.path", "deleted"],
  "deleted/public-keys": ["id", "name", "deleted"],
  "remote-build-nodes": ["xname"],
  "remote-build-nodes/status": ["xname", "ableToRunJobs", "sshStatus", "nodeArch", "numCurrentJobs"],
};

function field(r: Row, col: string): string {
  let v: unknown = r;
  for (const part of col.split(".")) v = v && typeof v === "object" ? (v as Row)[part] : undefined;
  if (v === null || v === undefined) return "-";
  return typeof v === "object" ? JSON.stringify(v) : String(v);
}

export function table(rows: Row[], cols: string[]): string {
  const cells = rows.map((r) => cols.map((c) => field(r, c)));
  const widths = cols.map((c, i) => Math.max(c.length, ...cells.map((row) => row[i]!.length)));
  const line = (vals: string[]) => vals.map((v, i) => (i === vals.length - 1 ? v : v.padEnd(widths[i]!))).join("  ");
  return [line(cols.map((c) => c.toUpperCase())), ...cells.map(line)].join("\n") + "\n";
}

function describe(r: Row, prefix = ""): string {
  let out = "";
  for (const [k, v] of Object.entries(r)) {
    if (v && typeof v === "object" && !Array.isArray(v) && Object.keys(v).length > 0) out += describe(v as Row, `${prefix}${k}.`);
    else out += `${prefix}${k}: ${v === null ? "-" : typeof v === "object" ? JSON.stringify(v) : String(v)}\n`;
  }
  return out;
}

function print(io: CommandIo, f: ClientFlags, value: unknown, kind: string): void {
  if (f.json) {
    io.stdout.write(JSON.stringify(value ?? null, null, 2) + "\n");
    return;
  }
  if (Array.isArray(value)) io.stdout.write(value.length === 0 ? `no ${kind.replace("deleted/", "deleted ").replace("remote-build-nodes/status", "remote-build-nodes")}\n` : table(value as Row[], COLUMNS[kind] ?? ["id"]));
  else if (value && typeof value === "object") {
    const { kiln, ...rest } = value as Row & { kiln?: Row & { package_diff?: PackageDiff | null } };
    const diff = kind === "images" ? kiln?.package_diff : undefined;
    const shown = kiln === undefined ? rest : { ...rest, kiln: diff !== undefined ? Object.fromEntries(Object.entries(kiln).filter(([k]) => k !== "package_diff")) : kiln };
    io.stdout.write(describe(shown));
    if (diff) {
      const lines = formatPackageDiff(diff);
      io.stdout.write(`package changes against ${String(kiln?.source_image_id ?? "the source image")}: ${lines.length === 0 ? "none" : ""}\n${lines.map((l) => `  ${l}\n`).join("")}`);
    }
  }
}

function bool(name: string, v: unknown): boolean | undefined {
  if (v === undefined) return undefined;
  if (v === true || /^(true|yes|1)$/i.test(String(v))) return true;
  if (v === false || /^(false|no|0)$/i.test(String(v))) return false;
  throw new KilnError("USAGE", `--${name} ${JSON.stringify(v)}: use true or false`);
}

function int(name: string, v: unknown): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n)) throw new KilnError("USAGE", `--${name} ${JSON.stringify(v)}: use a whole number`);
  return n;
}

/** cray's --link-path/--link-type/--link-etag → a link object. */
function linkOf(o: Row): Row | undefined {
  if (o.linkPath === undefined) return undefined;
  return { path: o.linkPath, type: o.linkType ?? "s3", ...(o.linkEtag !== undefined ? { etag: o.linkEtag } : {}) };
}

/** cray's comma lists --template-dictionary-key a,b --template-dictionary-value 1,2. */
function templateDictionary(o: Row): Row[] | undefined {
  if (o.templateDictionaryKey === undefined) return undefined;
  const keys = String(o.templateDictionaryKey).split(",");
  const values = String(o.templateDictionaryValue ?? "").split(",");
  if (keys.length !== values.length) throw new KilnError("USAGE", "--template-dictionary-key and --template-dictionary-value need as many comma-separated items");
  return keys.map((key, i) => ({ key, value: values[i]! }));
}

/**
 * cray's --ssh-containers-name/--ssh-containers-jail → `ssh_containers`, as `cray ims` sends it:
 * either flag alone makes one container with only that field (`[{"jail": true}]`; the service
 * names it `customize`), so a jail asked for without a name is never dropped.
 */
function sshContainers(o: Row): Row[] | undefined {
  const jail = bool("ssh-containers-jail", o.sshContainersJail);
  if (o.sshContainersName === undefined && jail === undefined) return undefined;
  return [compact({ name: o.sshContainersName, jail })];
}

function compact(o: Row): Row {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));
}

/** Request bodies of create/update per resource, from commander's camelCase options. */
export function bodyFor(resource: string, verb: "create" | "update", o: Row): Row {
  switch (resource) {
    case "recipes":
      return compact({
        ...(verb === "create" ? { name: o.name, recipe_type: o.recipeType, linux_distribution: o.linuxDistribution } : {}),
        arch: o.arch,
        require_dkms: bool("require-dkms", o.requireDkms),
        link: linkOf(o),
        template_dictionary: templateDictionary(o),
      });
    case "images":
      if (verb === "create") return compact({ name: o.name, arch: o.arch, link: linkOf(o), ...(o.metadataKey !== undefined ? { metadata: { [String(o.metadataKey)]: String(o.metadataValue ?? "") } } : {}) });
      return compact({
        arch: o.arch,
        link: linkOf(o),
        metadata: o.metadataOperation !== undefined ? compact({ operation: o.metadataOperation, key: o.metadataKey, value: o.metadataValue }) : undefined,
      });
    case "jobs":
      return compact({
        job_type: o.jobType,
        artifact_id: o.artifactId,
        public_key_id: o.publicKeyId,
        image_root_archive_name: o.imageRootArchiveName,
        kernel_file_name: o.kernelFileName,
        initrd_file_name: o.initrdFileName,
        kernel_parameters_file_name: o.kernelParametersFileName,
        enable_debug: bool("enable-debug", o.enableDebug),
        build_env_size: int("build-env-size", o.buildEnvSize),
        job_mem_size: int("job-mem-size", o.jobMemSize),
        require_dkms: bool("require-dkms", o.requireDkms),
        ssh_containers: sshContainers(o),
      });
    case "remote-build-nodes":
      return compact({ xname: o.xname });
    default:
      return compact({ name: o.name, public_key: o.publicKey });
  }
}

export async function imsCommand(resource: string, verb: string, id: string | undefined, o: Row, io: CommandIo): Promise<number> {
  const c = clientOf(o);
  const base = `/v3/${resource}`;
  switch (verb) {
    case "list":
      print(io, o, await c.json("GET", base), resource);
      return 0;
    case "describe": {
      const record = await c.json<Row>("GET", `${base}/${id}`);
      print(io, o, record, resource);
      if (resource === "images" && !o.json && record) await printArtifactLinks(c, record, io);
      return 0;
    }
    case "create": {
      const body = bodyFor(resource, "create", o);
      if (resource === "public-keys") body.public_key = await readFile(String(o.publicKey), "utf8").catch(() => {
        throw new KilnError("USAGE", `--public-key ${o.publicKey}: cannot read the file (cray ims takes a file, e.g. ~/.ssh/id_ed25519.pub)`);
      });
      print(io, o, await c.json("POST", base, body), resource);
      return 0;
    }
    case "update": {
      const body = resource.startsWith("deleted/") ? { operation: o.operation } : bodyFor(resource, "update", o);
      if (Object.keys(body).length === 0) throw new KilnError("USAGE", `${resource} update: give at least one field to change (see --help)`);
      const r = await c.json("PATCH", `${base}/${id}`, body);
      if (r === undefined) io.stdout.write(o.json ? "{}\n" : `${resource} ${id}: ${String(o.operation ?? "updated")}\n`);
      else print(io, o, r, resource);
      return 0;
    }
    case "undelete":
      await c.json("PATCH", `${base}/${id}`, { operation: "undelete" });
      io.stdout.write(o.json ? "{}\n" : `${resource.replace("deleted/", "")} ${id} restored\n`);
      return 0;
    case "delete":
      await c.json("DELETE", `${base}/${id}`);
      if (!o.json) io.stdout.write(`deleted ${id}\n`);
      return 0;
    case "deleteall": {
      const q = new URLSearchParams();
      for (const s of [o.status ?? []].flat() as string[]) for (const part of s.split(",")) q.append("status", part);
      if (o.jobType) q.set("job_type", String(o.jobType));
      if (o.age) q.set("age", String(o.age));
      await c.json("DELETE", `${base}${q.size ? `?${q}` : ""}`);
      if (!o.json) io.stdout.write(`deleted all ${resource}${q.size ? ` matching ${q}` : ""}\n`);
      return 0;
    }
  }
  throw new KilnError("USAGE", `unknown verb ${verb}`);
}

/**
 * recipe.yaml as a job will build it, to read name and distribution from; as it is when it does
 * not render (the service reports why when it checks the upload).
 */
function renderedForDetection(text: string, dictionary: Array<{ key: string; value: string }>, label: string): string {
  try {
    return renderRecipeTemplate(text, dictionary, label).text;
  } catch {
    return text;
  }
}

/** `kiln ims recipes upload DIR`: pack the folder, register a kiln recipe, upload its archive. */
export async function recipesUploadCommand(dir: string, o: Row, io: CommandIo): Promise<number> {
  const c = clientOf(o);
  const recipeFile = path.join(dir, "recipe.yaml");
  const st = await stat(recipeFile).catch(() => undefined);
  if (!st?.isFile()) throw new KilnError("USAGE", `${dir}: no recipe.yaml in it; a kiln recipe folder holds recipe.yaml and the files it references`);
  const dictionary = templateDictionary(o) as Array<{ key: string; value: string }> | undefined;
  const text = renderedForDetection(await readFile(recipeFile, "utf8"), dictionary ?? [], dir);
  const name = (o.name as string | undefined) ?? /^name:\s*["']?([^"'\s#]+)/m.exec(text)?.[1] ?? path.basename(path.resolve(dir));
  const suite = /^\s*debian:\s*["']?([a-z]+)/m.exec(text)?.[1];
  const distro = (o.linuxDistribution as string | undefined) ?? ({ bullseye: "debian11", bookworm: "debian12", trixie: "debian13" } as Record<string, string>)[suite ?? ""] ?? "debian12";
  const tmp = path.join(path.dirname(path.resolve(dir)), `.kiln-recipe-${process.pid}.tar.gz`);
  try {
    // prettier-ignore
    await exec(["tar", "--create", "--gzip", "--owner=0", "--group=0", "--numeric-owner", "--sort=name",
                "--exclude=./out", "--exclude=./.git", "--file", tmp, "--directory", dir, "."]);
    const recipe = (await c.json<Row>("POST", "/v3/recipes", compact({ name, recipe_type: "kiln", linux_distribution: distro, arch: o.arch, require_dkms: bool("require-dkms", o.requireDkms), template_dictionary: dictionary })))!;
    try {
      const size = (await stat(tmp)).size;
      const res = await c.raw("PUT", `/v3/recipes/${String(recipe.id)}/archive`, { body: await readFile(tmp), headers: { "content-type": "application/gzip", "content-length": String(size) } });
      const updated = (await res.json()) as Row;
      if (o.json) io.stdout.write(JSON.stringify(updated, null, 2) + "\n");
      else io.stdout.write(`recipe ${String(updated.id)} "${name}" (${distro}): ${size} bytes uploaded to ${field(updated, "link.path")}\n`);
      return 0;
    } catch (e) {
      await c.json("DELETE", `/v3/recipes/${String(recipe.id)}`).catch(() => {});
      await c.json("DELETE", `/v3/deleted/recipes/${String(recipe.id)}`).catch(() => {});
      throw e;
    }
  } finally {
    await rm(tmp, { force: true });
  }
}

interface ManifestArtifact {
  type: string;
  md5: string;
  flavor?: string;
  link: { path: string };
}

/**
 * The table view of `images describe`: after the record, the artifacts its manifest links (SBOMs,
 * provenance and SHA256SUMS beside IMS' own), each named as in an out dir. `--json` keeps the record
 * as IMS answers it.
 */
async function printArtifactLinks(c: ImsClient, image: Row, io: CommandIo): Promise<void> {
  const link = image.link as { path?: unknown } | null | undefined;
  if (typeof link?.path !== "string") return;
  let manifest: { artifacts?: ManifestArtifact[] };
  try {
    manifest = (await (await c.raw("GET", artifactApiPath(link.path), { signal: io.signal })).json()) as typeof manifest;
  } catch (e) {
    io.stdout.write(`artifacts: cannot read the manifest ${link.path} (${(e as Error).message})\n`);
    return;
  }
  const rows = (manifest.artifacts ?? []).map((a) => ({ artifact: uploadedKindOf(a.type)?.name ?? "", flavor: a.flavor ?? "", type: a.type, link: a.link?.path }));
  io.stdout.write(`artifacts (${link.path}):\n${table(rows, ["artifact", "flavor", "type", "link"]).replace(/^/gm, "  ")}`);
}

/** `kiln ims images download ID --out DIR`: every artifact of the manifest, md5-checked. */
export async function imagesDownloadCommand(id: string, o: Row, io: CommandIo): Promise<number> {
  const c = clientOf(o);
  const image = (await c.json<Row & { link: { path: string } | null }>("GET", `/v3/images/${id}`))!;
  if (!image.link) throw new KilnError("NOT_FOUND", `image ${id} has no link yet (no artifacts uploaded)`);
  const out = path.resolve(String(o.out ?? id));
  await mkdir(out, { recursive: true });
  const manifestText = await (await c.raw("GET", artifactApiPath(image.link.path))).text();
  const manifest = JSON.parse(manifestText) as { artifacts: ManifestArtifact[] };
  const got: Row[] = [];
  for (const a of manifest.artifacts) {
    const key = a.link.path.replace(/^s3:\/\/[^/]+\/[^/]+\//, ""); // drop bucket and image id
    const file = path.join(out, key);
    await mkdir(path.dirname(file), { recursive: true });
    const res = await c.raw("GET", artifactApiPath(a.link.path), { signal: io.signal });
    const md5 = createHash("md5");
    let size = 0;
    const hash = new Transform({
      transform(chunk: Buffer, _e, done) {
        md5.update(chunk);
        size += chunk.length;
        done(null, chunk);
      },
    });
    await pipeline(Readable.fromWeb(res.body! as import("node:stream/web").ReadableStream), hash, createWriteStream(`${file}.part`));
    const sum = md5.digest("hex");
    if (sum !== a.md5) {
      await rm(`${file}.part`, { force: true });
      throw new KilnError("STORE_FAILED", `${a.link.path}: downloaded md5 ${sum}, the manifest says ${a.md5}`);
    }
    await rename(`${file}.part`, file);
    got.push({ type: a.type, file: path.relative(out, file), size, md5: sum, ...(a.flavor ? { flavor: a.flavor } : {}) });
    if (!o.json) io.stdout.write(`${path.relative(process.cwd(), file) || file}  ${size} bytes  md5 ${sum} ok\n`);
  }
  await writeText(path.join(out, "manifest.json"), manifestText);
  if (o.json) io.stdout.write(JSON.stringify({ image: id, out, artifacts: got }, null, 2) + "\n");
  return 0;
}

/** The answer of GET /v3/images/{id}/urls. */
export interface ImageUrls {
  image_id: string;
  expires_in: number;
  expires_at: string;
  manifest: { path: string; url: string };
  artifacts: Array<{ type: string; md5?: string; flavor?: string; path: string; url: string }>;
}

/** `kiln ims images urls ID [--expires S]`: presigned URLs of the image's artifacts (no token needed to fetch them). */
export async function imagesUrlsCommand(id: string, o: Row, io: CommandIo): Promise<number> {
  const c = clientOf(o);
  const expires = int("expires", o.expires);
  const urls = (await c.json<ImageUrls>("GET", `/v3/images/${encodeURIComponent(id)}/urls${expires !== undefined ? `?expires=${expires}` : ""}`))!;
  if (o.json) {
    io.stdout.write(JSON.stringify(urls, null, 2) + "\n");
    return 0;
  }
  io.stdout.write(`# image ${urls.image_id}: valid until ${urls.expires_at} (${urls.expires_in} s)\n`);
  io.stdout.write(table([...urls.artifacts, { type: "manifest.json", path: urls.manifest.path, url: urls.manifest.url }], ["type", "flavor", "md5", "url"]));
  return 0;
}

/** `kiln ims images promote ID --to LABEL`: the image's simplestreams label (candidate → stable). */
export async function imagesPromoteCommand(id: string, o: Row, io: CommandIo): Promise<number> {
  const c = clientOf(o);
  const image = (await c.json<Row & { kiln: { label: string } }>("POST", `/v3/images/${encodeURIComponent(id)}/promote`, { to: o.to }))!;
  if (o.json) io.stdout.write(JSON.stringify(image, null, 2) + "\n");
  else io.stdout.write(`image ${id}: label ${image.kiln.label}\n`);
  return 0;
}

async function writeText(file: string, text: string): Promise<void> {
  const { writeFile } = await import("node:fs/promises");
  await writeFile(file, text);
}

/** `kiln ims jobs log ID`: print the log (following it while the job runs, unless --no-follow). */
export async function jobsLogCommand(id: string, o: Row, io: CommandIo): Promise<number> {
  const c = clientOf(o);
  await streamLog(c, id, o.follow !== false, io.stdout, io.signal);
  return 0;
}

async function streamLog(c: ImsClient, id: string, follow: boolean, out: NodeJS.WritableStream, signal: AbortSignal): Promise<void> {
  const res = await c.raw("GET", `/v3/jobs/${id}/log?follow=${follow}`, { signal });
  for await (const chunk of Readable.fromWeb(res.body! as import("node:stream/web").ReadableStream)) out.write(chunk as Buffer);
}

/** `kiln ims jobs wait ID`: follow the job (with its log unless --no-log) until it ends; exit 1 on error. */
export async function jobsWaitCommand(id: string, o: Row, io: CommandIo): Promise<number> {
  const c = clientOf(o);
  const timeout = o.timeout !== undefined ? Number(o.timeout) * 1000 : undefined;
  const deadline = timeout ? Date.now() + timeout : Infinity;
  if (o.log !== false) {
    // The log stream ends when the job ends; if it breaks (service restart), fall back to polling.
    await streamLog(c, id, true, io.stderr, timeout ? AbortSignal.any([io.signal, AbortSignal.timeout(timeout)]) : io.signal).catch((e: unknown) => {
      if (e instanceof KilnError && e.code === "NOT_FOUND") throw e;
    });
  }
  for (;;) {
    const job = (await c.json<Row & { status: string; kiln?: { error?: string } }>("GET", `/v3/jobs/${id}`))!;
    if (job.status === "success" || job.status === "error") {
      print(io, o, job, "jobs");
      if (job.status === "error") throw new KilnError("JOB_FAILED", `job ${id} ended in error: ${job.kiln?.error ?? "(no reason recorded)"}`);
      return 0;
    }
    if (Date.now() > deadline) throw new KilnError("JOB_FAILED", `job ${id} still ${job.status} after --timeout ${String(o.timeout)} s`);
    if (io.signal.aborted) return 130;
    await new Promise((r) => setTimeout(r, 1000));
  }
}

export async function jobsCancelCommand(id: string, o: Row, io: CommandIo): Promise<number> {
  const c = clientOf(o);
  print(io, o, await c.json("POST", `/v3/jobs/${id}/cancel`), "jobs");
  return 0;
}

/** `kiln ims jobs end-session ID [--failed]`: what touching complete (or failed) in the session does. */
export async function jobsEndSessionCommand(id: string, o: Row, io: CommandIo): Promise<number> {
  const c = clientOf(o);
  print(io, o, await c.json("POST", `/v3/jobs/${id}/end-session`, { marker: o.failed === true ? "failed" : "complete" }), "jobs");
  return 0;
}
