/**
 * `kiln attest verify IMAGE_ID`: the checks of an out dir (verify.ts) on an image of the service.
 * Its artifacts are downloaded through the API (`GET /v3/artifacts/<bucket>/<key>`, as `kiln ims
 * images download` does, with the CLI's --url and token) into a scratch folder laid out as the
 * job's out dir was (each type at its out-dir path, artifacts/types.ts outPathOf), beside a
 * result.json written from the record and its manifest: the artifacts the manifest lists, and
 * the recipe the record names (ImageKiln.recipe, written by the job, not by whoever can write the
 * store). Then the very same verification runs, and each finding also names the store object.
 */
import { createWriteStream } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import type { ReadableStream } from "node:stream/web";
import { pipeline } from "node:stream/promises";
import type { BuildResult, ResultArtifact } from "../artifacts/result.js";
import { outPathOf, uploadedKindOf } from "../artifacts/types.js";
import type { ImageRecord } from "../catalog/records.js";
import { artifactApiPath, type ImsClient } from "../client/ims-client.js";
import { isKilnError, KilnError } from "../errors.js";
import { verifyAttestations, type AttestFinding, type AttestReport } from "./verify.js";

/** Flavor names as recipes allow them: a manifest's `flavor` becomes a folder of the scratch dir. */
const FLAVOR = /^[a-z0-9][a-z0-9.-]*$/;

export interface ImageAttestReport extends AttestReport {
  image: string;
  /** Out-dir path → the store object it was downloaded from. */
  objects: Record<string, string>;
  findings: Array<AttestFinding & { object?: string }>;
}

interface StoredManifest {
  artifacts: Array<{ type: string; md5?: string; flavor?: unknown; link?: { path?: unknown } }>;
}

export async function verifyImageAttestations(c: ImsClient, id: string, opts: { keyring?: string; signal?: AbortSignal } = {}): Promise<ImageAttestReport> {
  let image: ImageRecord;
  try {
    image = (await c.json<ImageRecord>("GET", `/v3/images/${encodeURIComponent(id)}`))!;
  } catch (e) {
    if (isKilnError(e) && e.code === "NOT_FOUND") {
      throw new KilnError("NOT_FOUND", `image ${id}: no such image at ${c.base}`, { hint: "`kiln ims images list` shows the image ids; for an out dir, give its path" });
    }
    throw e;
  }
  if (!image.link) throw new KilnError("INPUT_INVALID", `image ${id} has no link: its artifacts were never uploaded, so there is nothing to verify`);
  const manifest = (await (await c.raw("GET", artifactApiPath(image.link.path), { signal: opts.signal })).json()) as StoredManifest;
  if (!Array.isArray(manifest?.artifacts)) throw new KilnError("INPUT_INVALID", `image ${id}: its manifest ${image.link.path} lists no artifacts`);

  const dir = await mkdtemp(path.join(os.tmpdir(), `kiln-attest-${id.slice(0, 8)}-`));
  try {
    const objects: Record<string, string> = {};
    const early: AttestFinding[] = [];
    const artifacts: ResultArtifact[] = [];
    for (const a of manifest.artifacts) {
      const kind = uploadedKindOf(a?.type);
      if (!kind) continue; // a type no Kiln job uploads (another IMS client's): not Kiln's to attest
      if (typeof a.link?.path !== "string" || !a.link.path.startsWith("s3://")) {
        early.push({ file: kind.name, ok: false, message: `${kind.name}: the manifest links it as ${JSON.stringify(a.link?.path)}, not an s3://bucket/key path` });
        continue;
      }
      const flavor = typeof a.flavor === "string" ? a.flavor : undefined;
      if (flavor !== undefined && !FLAVOR.test(flavor)) {
        early.push({ file: a.link.path, ok: false, message: `${a.link.path}: the manifest gives it flavor ${JSON.stringify(flavor)}, which is no flavor name` });
        continue;
      }
      const rel = outPathOf(a.type, flavor)!;
      if (objects[rel] !== undefined) {
        early.push({ file: rel, ok: false, message: `${rel}: the manifest lists two objects for it (${objects[rel]}, ${a.link.path})` });
        continue;
      }
      objects[rel] = a.link.path;
      const file = path.join(dir, rel);
      await mkdir(path.dirname(file), { recursive: true });
      const res = await c.raw("GET", artifactApiPath(a.link.path), { signal: opts.signal });
      await pipeline(Readable.fromWeb(res.body! as ReadableStream), createWriteStream(file), { signal: opts.signal });
      // Only path and type matter to the checks: the digests are what they test.
      artifacts.push({ name: kind.name, path: rel, type: a.type, ftype: kind.ftype, sha256: "", md5: a.md5 ?? "", size: 0, ...(flavor ? { flavor } : {}) });
    }
    const recipe = image.kiln?.recipe ?? { name: image.name, sha256: "" };
    const result: Pick<BuildResult, "recipe" | "artifacts"> = { recipe, artifacts };
    await writeFile(path.join(dir, "result.json"), JSON.stringify(result, null, 2) + "\n");
    const report = await verifyAttestations(dir, { keyring: opts.keyring, recipeFrom: `image ${id}'s record` });
    const findings = [...early, ...report.findings].map((f) => {
      const object = objects[f.file];
      return object ? { ...f, object, message: f.message.replace(`${f.file}:`, `${f.file} (${object}):`) } : f;
    });
    return { image: id, ok: findings.every((f) => f.ok), signed: report.signed, findings, objects };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
