/**
 * The two sides of `kiln diff`, read into Snapshots (src/diff/compare.ts):
 *  - an out dir: result.json (artifact sizes, each flavor's kernel), its squashfs.manifest, and
 *    its squashfs's listing (`unsquashfs -lln`, read-only, no extraction);
 *  - an image id of a Kiln service: the record (each flavor's kernel), the objects of its
 *    manifest (sizes), the package list a job stores beside the rootfs (`rootfs.manifest`); with
 *    `files`, the rootfs is downloaded to a scratch dir to be listed.
 */
import { createWriteStream } from "node:fs";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { ARTIFACT_KINDS } from "../artifacts/types.js";
import { artifactApiPath, IMAGE_ID, type ImsClient } from "../client/ims-client.js";
import { KilnError } from "../errors.js";
import { capture } from "../host/exec.js";
import { parsePackageList } from "../jobs/package-diff.js";
import { readBuildResult } from "../verify/verify-out.js";
import { parseSquashfsListing, type Snapshot } from "./compare.js";

/** What `kiln diff` was given: an existing folder is an out dir, a UUID an image id. */
export async function sideKind(arg: string): Promise<"out" | "image"> {
  if ((await stat(arg).catch(() => undefined))?.isDirectory()) return "out";
  if (IMAGE_ID.test(arg)) return "image";
  throw new KilnError("USAGE", `${arg}: neither an out dir nor an image id; give the out dir of a kiln build, or an image id of the service at --url`);
}

async function listSquashfs(file: string): Promise<Snapshot["files"]> {
  return parseSquashfsListing(await capture(["unsquashfs", "-lln", "-d", "", file]));
}

export async function outDirSnapshot(dir: string): Promise<Snapshot> {
  const result = await readBuildResult(dir);
  const kernels: Snapshot["kernels"] = {};
  const artifacts: Snapshot["artifacts"] = {};
  for (const a of result.artifacts) {
    artifacts[a.path] = a.size;
    if (a.flavor && a.ftype === ARTIFACT_KINDS.kernel.ftype) kernels[a.flavor] = { version: a.kernelVersion ?? "", kpackage: a.kpackage ?? "" };
  }
  const list = result.artifacts.find((a) => a.ftype === ARTIFACT_KINDS.manifest.ftype && !a.flavor);
  const squashfs = result.artifacts.find((a) => a.ftype === ARTIFACT_KINDS.squashfs.ftype && !a.flavor);
  return {
    label: dir,
    ...(list ? { packages: parsePackageList(await readFile(path.join(dir, list.path), "utf8")) } : {}),
    kernels,
    artifacts,
    ...(squashfs ? { files: await listSquashfs(path.join(dir, squashfs.path)) } : {}),
  };
}

interface ImageManifest {
  artifacts: Array<{ type: string; flavor?: string; link: { path: string } }>;
}

export async function imageSnapshot(c: ImsClient, id: string, o: { files: boolean; signal?: AbortSignal }): Promise<Snapshot> {
  const image = (await c.json<{ link: { path: string } | null; kiln?: { flavors?: Array<{ flavor: string; kpackage: string; kernel_version: string }> } }>("GET", `/v3/images/${id}`))!;
  if (!image.link) throw new KilnError("INPUT_INVALID", `image ${id} has no link yet (its artifacts were never uploaded); nothing to compare`);
  const manifest = (await (await c.raw("GET", artifactApiPath(image.link.path))).json()) as ImageManifest;
  const kernels: Snapshot["kernels"] = {};
  for (const f of image.kiln?.flavors ?? []) kernels[f.flavor] = { version: f.kernel_version, kpackage: f.kpackage };
  const artifacts: Snapshot["artifacts"] = {};
  let packages: Snapshot["packages"];
  let files: Snapshot["files"];
  for (const a of manifest.artifacts) {
    const key = a.link.path.replace(/^s3:\/\/[^/]+\/[^/]+\//, ""); // drop the bucket and the image id
    const res = await c.raw("GET", artifactApiPath(a.link.path), { signal: o.signal });
    artifacts[key] = Number(res.headers.get("content-length"));
    if (a.type === ARTIFACT_KINDS.manifest.type) packages = parsePackageList(await res.text());
    else if (a.type === ARTIFACT_KINDS.squashfs.type && o.files) files = await downloadAndList(res, id, o.signal);
    else await res.body?.cancel();
  }
  return { label: `image ${id}`, ...(packages ? { packages } : {}), kernels, artifacts, ...(files ? { files } : {}) };
}

async function downloadAndList(res: Response, id: string, signal?: AbortSignal): Promise<Snapshot["files"]> {
  const dir = await mkdtemp(path.join(os.tmpdir(), `kiln-diff-${id.slice(0, 8)}-`));
  try {
    const file = path.join(dir, "rootfs");
    await pipeline(Readable.fromWeb(res.body! as import("node:stream/web").ReadableStream), createWriteStream(file), { signal });
    return await listSquashfs(file);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
