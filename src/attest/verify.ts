/**
 * `kiln attest verify OUT`: what a consumer of an out dir can check offline. Every failure is
 * collected (not only the first), each naming the file it concerns:
 *  - SHA256SUMS.gpg is a good signature of SHA256SUMS (gpgv, with --keyring or gpgv's default
 *    keyring); an out dir without it passes only when no keyring is asked for;
 *  - every file SHA256SUMS lists has that sha256, and every artifact result.json lists is in it;
 *  - provenance.json is an in-toto statement with an SLSA v1 predicate, names the recipe digest
 *    result.json gives, and its subjects' digests are those of the files.
 */
import { lstat, readFile } from "node:fs/promises";
import path from "node:path";
import { readOutResult, type BuildResult } from "../artifacts/result.js";
import { ARTIFACT_KINDS } from "../artifacts/types.js";
import { fileDigest } from "../cache/key.js";
import { exec } from "../host/exec.js";
import { openVerifier } from "../streams/sign.js";
import { PROVENANCE_TYPE, STATEMENT_TYPE, type ProvenanceStatement } from "./provenance.js";
import { parseSums, safeRelPath, SUMS_FILE, SUMS_SIGNATURE } from "./sums.js";

export interface AttestFinding {
  /** The file concerned, relative to the out dir. */
  file: string;
  ok: boolean;
  message: string;
}

export interface AttestReport {
  ok: boolean;
  signed: boolean;
  findings: AttestFinding[];
}

/**
 * `recipeFrom`: who says which recipe the artifacts were built from, for messages (result.json for
 * an out dir; the image record for an image of the service, verify-image.ts).
 */
export async function verifyAttestations(outDir: string, opts: { keyring?: string; recipeFrom?: string } = {}): Promise<AttestReport> {
  const out = path.resolve(outDir);
  const result = await readOutResult(out);
  const findings: AttestFinding[] = [];
  const fail = (file: string, message: string) => findings.push({ file, ok: false, message: `${file}: ${message}` });
  const pass = (file: string, message: string) => findings.push({ file, ok: true, message: `${file}: ${message}` });
  const isFile = async (rel: string) => (await lstat(path.join(out, rel)).catch(() => undefined))?.isFile() ?? false;

  // The signature first: it says whether SHA256SUMS itself can be trusted.
  const sumsText = (await isFile(SUMS_FILE)) ? await readFile(path.join(out, SUMS_FILE), "utf8") : undefined;
  const signed = await isFile(SUMS_SIGNATURE);
  if (sumsText === undefined) fail(SUMS_FILE, "missing (a build of Kiln 0.1 or later writes it)");
  else if (signed) {
    const v = await checkSignature(out, opts.keyring);
    if (v.ok) pass(SUMS_SIGNATURE, `good signature of ${SUMS_FILE}`);
    else fail(SUMS_FILE, `the signature ${SUMS_SIGNATURE} does not verify (${v.why}): ${SUMS_FILE} was changed or signed by another key`);
  } else if (opts.keyring) fail(SUMS_SIGNATURE, `missing: ${SUMS_FILE} is not signed (build with --sign-key)`);

  let sums: Array<{ path: string; sha256: string }> = [];
  if (sumsText !== undefined) {
    try {
      sums = parseSums(sumsText);
    } catch (e) {
      fail(SUMS_FILE, (e as Error).message.replace(`${SUMS_FILE} `, ""));
    }
  }
  const actual = new Map<string, string>();
  for (const e of sums) {
    if (!(await isFile(e.path))) {
      fail(e.path, `missing (${SUMS_FILE} lists it)`);
      continue;
    }
    const got = await fileDigest(path.join(out, e.path));
    actual.set(e.path, got);
    if (got === e.sha256) pass(e.path, "checksum ok");
    else fail(e.path, `checksum mismatch: ${SUMS_FILE} says ${e.sha256}, the file has ${got}`);
  }
  const listed = new Set(sums.map((e) => e.path));
  const unsummed = new Set<string>([ARTIFACT_KINDS.checksums.name, ARTIFACT_KINDS.checksumsSignature.name]);
  for (const a of result.artifacts) {
    if (unsummed.has(a.path) || !safeRelPath(a.path)) continue;
    if (sumsText !== undefined && !listed.has(a.path)) fail(a.path, `not in ${SUMS_FILE}, though result.json lists it as an artifact`);
  }

  const prov = ARTIFACT_KINDS.provenance.name;
  if (!(await isFile(prov))) fail(prov, "missing");
  else {
    if (sumsText !== undefined && !listed.has(prov)) fail(prov, `not in ${SUMS_FILE}`);
    let st: ProvenanceStatement | undefined;
    try {
      st = JSON.parse(await readFile(path.join(out, prov), "utf8")) as ProvenanceStatement;
    } catch (e) {
      fail(prov, `not JSON (${(e as Error).message})`);
    }
    if (st) {
      if (st._type !== STATEMENT_TYPE || st.predicateType !== PROVENANCE_TYPE) fail(prov, `not an in-toto ${STATEMENT_TYPE} statement with a ${PROVENANCE_TYPE} predicate`);
      const recipe = st.predicate?.buildDefinition?.externalParameters?.recipe?.digest?.sha256;
      if (recipe !== result.recipe.sha256) fail(prov, `names recipe digest ${String(recipe)}, but ${opts.recipeFrom ?? "result.json"} says it was built from ${result.recipe.sha256 || "no known recipe"}`);
      else pass(prov, `names this build's recipe (${result.recipe.name}, sha256 ${recipe})`);
      checkLockNamed(st, result, actual, fail, pass);
      for (const s of Array.isArray(st.subject) ? st.subject : []) {
        if (typeof s?.name !== "string" || !safeRelPath(s.name)) {
          fail(prov, `subject ${JSON.stringify(s?.name)} is not a path inside the out dir`);
          continue;
        }
        const got = actual.get(s.name) ?? ((await isFile(s.name)) ? await fileDigest(path.join(out, s.name)) : undefined);
        if (got === undefined) fail(s.name, `missing (${prov} names it as a subject)`);
        else if (got !== s.digest?.sha256) fail(s.name, `does not match its digest in ${prov} (${String(s.digest?.sha256)}; the file has ${got})`);
      }
    }
  }
  return { ok: findings.every((f) => f.ok), signed, findings };
}

/**
 * The provenance must name this out dir's kiln.lock (a subject with the file's digest), and for a
 * locked build the lock it was built from (externalParameters.lock, as result.json records it).
 */
function checkLockNamed(
  st: ProvenanceStatement,
  result: BuildResult,
  actual: ReadonlyMap<string, string>,
  fail: (file: string, message: string) => void,
  pass: (file: string, message: string) => void,
): void {
  const prov = ARTIFACT_KINDS.provenance.name;
  const lock = ARTIFACT_KINDS.lock.name;
  if (!result.artifacts.some((a) => a.path === lock)) return; // built before Kiln wrote locks
  const named = (Array.isArray(st.subject) ? st.subject : []).find((s) => s?.name === lock);
  if (!named) fail(prov, `does not name ${lock} (result.json lists it): the provenance is not of this lock`);
  else if (actual.has(lock) && actual.get(lock) === named.digest?.sha256) pass(prov, `names this ${lock} (sha256 ${named.digest.sha256})`);
  const from = st.predicate?.buildDefinition?.externalParameters?.lock?.digest?.sha256;
  if (result.lock && from !== result.lock.sha256) fail(prov, `names lock ${String(from)} as the build's input, but result.json says it was built from ${result.lock.file} (sha256 ${result.lock.sha256})`);
  if (!result.lock && from !== undefined) fail(prov, `names an input lock (${from}), but result.json records no --lock build`);
}

/** gpgv on SHA256SUMS.gpg + SHA256SUMS: with --keyring as MAAS does it (streams' verifier), else gpgv's default keyring. */
async function checkSignature(out: string, keyring: string | undefined): Promise<{ ok: boolean; why: string }> {
  const sig = await readFile(path.join(out, SUMS_SIGNATURE), "utf8");
  const data = await readFile(path.join(out, SUMS_FILE), "utf8");
  if (keyring) {
    const v = await openVerifier(keyring);
    try {
      return await v.verifyDetached(sig, data);
    } finally {
      await v.close();
    }
  }
  const r = await exec(["gpgv", path.join(out, SUMS_SIGNATURE), path.join(out, SUMS_FILE)], { okCodes: [0, 1, 2], captureStdout: true, quietStdout: true }).catch((e: Error) => ({ code: 2, stdout: e.message }));
  return { ok: r.code === 0, why: r.code === 0 ? "" : "gpgv: bad or unknown signature (give the signer's key with --keyring)" };
}
