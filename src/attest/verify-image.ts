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
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import type { ReadableStream } from "node:stream/web";
import { pipeline } from "node:stream/promises";
import type { BuildResult, ResultArtifact } from "../artifacts/result.js";
import { ARTIFACT_KINDS, outPathOf, uploadedKindOf } from "../artifacts/types.js";
import { fileDigest } from "../cache/key.js";
import type { ImageRecord } from "../catalog/records.js";
import { artifactApiPath, type ImsClient } from "../client/ims-client.js";
import { isKilnError, KilnError } from "../errors.js";
import type { ProvenanceStatement } from "./provenance.js";
import { parseSums, SUMS_FILE, SUMS_SIGNATURE } from "./sums.js";
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
    const bound = await recordFindings(dir, id, image.kiln?.artifact_sha256, Object.keys(objects));
    const findings = [...early, ...report.findings, ...bound].map((f) => {
      const object = objects[f.file];
      return object ? { ...f, object, message: f.message.replace(`${f.file}:`, `${f.file} (${object}):`) } : f;
    });
    return { image: id, ok: findings.every((f) => f.ok), signed: report.signed, findings, objects };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * What binds the stored files to this image. A store writer can put under its keys another
 * image's files with that image's SHA256SUMS, SHA256SUMS.gpg and provenance.json: validly signed,
 * self-consistent, and naming the same recipe when it is an older build of it. Only the record,
 * which its job wrote into the catalog, says which files are this image's (ImageKiln.artifact_sha256):
 * SHA256SUMS and its signature must be the very files the job published, and every digest
 * SHA256SUMS and the provenance's subjects state must be the record's, each mismatch named.
 */
async function recordFindings(dir: string, id: string, recorded: Record<string, string> | undefined, downloaded: readonly string[]): Promise<AttestFinding[]> {
  const who = `image ${id}'s record`;
  if (!recorded) {
    return [{ file: SUMS_FILE, ok: true, message: `${SUMS_FILE}: ${who} keeps no artifact digests (published before Kiln recorded them), so only the recipe binds these files to it` }];
  }
  const out: AttestFinding[] = [];
  const fail = (file: string, message: string) => out.push({ file, ok: false, message: `${file}: ${message}` });
  const have = new Set(downloaded);
  for (const rel of [SUMS_FILE, SUMS_SIGNATURE]) {
    const want = recorded[rel];
    if (want === undefined || !have.has(rel)) continue; // unsigned, or missing: named below
    const got = await fileDigest(path.join(dir, rel));
    if (got !== want) fail(rel, `the store's file has sha256 ${got}, but ${who} says its job published ${want}: the signed set is not this image's`);
  }
  for (const [rel, want] of Object.entries(recorded)) if (!have.has(rel)) fail(rel, `missing from the store's manifest, though ${who} lists it (sha256 ${want})`);
  for (const rel of downloaded) if (recorded[rel] === undefined) fail(rel, `in the store's manifest, but ${who} lists no such artifact of its job`);

  const sums = await readFile(path.join(dir, SUMS_FILE), "utf8").then(parseSums).catch(() => undefined); // unreadable: verify.ts says why
  if (sums) {
    const named = new Set(sums.map((e) => e.path));
    for (const e of sums) {
      const want = recorded[e.path];
      if (want === undefined) fail(e.path, `${SUMS_FILE} names it, but ${who} lists no such artifact`);
      else if (want !== e.sha256) fail(e.path, `${SUMS_FILE} names it with sha256 ${e.sha256}, but ${who} says ${want}`);
    }
    for (const [rel, want] of Object.entries(recorded)) {
      if (rel !== SUMS_FILE && rel !== SUMS_SIGNATURE && !named.has(rel)) fail(rel, `${who} lists it (sha256 ${want}), but ${SUMS_FILE} does not name it`);
    }
  }
  const prov = ARTIFACT_KINDS.provenance.name;
  const st = await readFile(path.join(dir, prov), "utf8").then((t) => JSON.parse(t) as ProvenanceStatement).catch(() => undefined);
  for (const sub of Array.isArray(st?.subject) ? st.subject : []) {
    const name = String(sub?.name);
    const want = recorded[name];
    if (want === undefined) fail(prov, `subject ${name} is no artifact ${who} lists`);
    else if (want !== sub?.digest?.sha256) fail(prov, `subject ${name} has sha256 ${String(sub?.digest?.sha256)}, but ${who} says ${want}`);
  }
  if (out.length === 0) out.push({ file: SUMS_FILE, ok: true, message: `${SUMS_FILE}: the one ${who} names, as is every digest in it and in ${prov}` });
  return out;
}
