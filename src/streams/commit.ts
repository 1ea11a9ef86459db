/**
 * The last step of every change to a stream (publish, promote, bootloaders, sync): write the
 * changed products files, update the orphan ledger (reaping what has waited out its grace period),
 * regenerate index.json, sign, save the bookkeeping. Item files are always in place before the
 * products file that names them, and products files before the index that lists them.
 */
import { lstat } from "node:fs/promises";
import { KilnError } from "../errors.js";
import { dumpJson, streamTimestamp, STREAMS_DIR, type IndexFile, type ProductsFile } from "./format.js";
import { reconcileOrphans, referencedPaths, type OrphanReport } from "./retention.js";
import type { Signer } from "./sign.js";
import type { StreamDir, StreamState } from "./stream-dir.js";

export interface CommitOptions {
  now: Date;
  graceSeconds: number;
  signer?: Signer;
}

/** A signed stream stays signed: refuse to write unsigned metadata next to stale signatures. */
export async function checkSigning(dir: StreamDir, signer: Signer | undefined): Promise<void> {
  if (signer) return;
  const signed = (await lstat(dir.abs(`${STREAMS_DIR}/index.sjson`)).catch(() => undefined)) !== undefined;
  if (signed) {
    throw new KilnError("USAGE", `${dir.root} is a signed stream: pass --sign-key, or its .sjson files would go stale`, {
      hint: "to stop signing it, delete streams/v1/*.sjson and streams/v1/*.json.gpg first",
    });
  }
}

export async function commitStream(dir: StreamDir, changed: ProductsFile[], state: StreamState, o: CommitOptions): Promise<OrphanReport> {
  const updated = streamTimestamp(o.now);
  for (const f of changed) {
    f.updated = updated;
    await dir.writeProducts(f);
  }
  const all = await dir.allProducts();
  const orphans = await reconcileOrphans(dir.root, referencedPaths(all), state, o.now, o.graceSeconds);
  if (o.signer) for (const f of all) await signFile(dir, o.signer, `${STREAMS_DIR}/${f.content_id}`, dumpJson(f), dumpJson(f));
  const { index } = await dir.writeIndex(o.now);
  if (o.signer) await signFile(dir, o.signer, `${STREAMS_DIR}/index`, dumpJson(index), dumpJson(signedIndex(index)));
  await dir.writeState(state);
  return orphans;
}

/** `X.json.gpg` (detached, over X.json) and `X.sjson` (clearsigned `signedText`). */
async function signFile(dir: StreamDir, signer: Signer, base: string, jsonText: string, signedText: string): Promise<void> {
  await dir.writeText(`${base}.json.gpg`, await signer.detachSign(jsonText));
  await dir.writeText(`${base}.sjson`, await signer.clearsign(signedText));
}

/** The index as it goes into index.sjson: paths point at the `.sjson` products files (simplestreams make_signed_content_paths). */
export function signedIndex(index: IndexFile): IndexFile {
  const copy = JSON.parse(JSON.stringify(index)) as IndexFile;
  for (const e of Object.values(copy.index)) e.path = e.path.replace(/\.json$/, ".sjson");
  return copy;
}
