/**
 * `kiln streams promote --from candidate --to stable`: copies products from one label to another
 * in the same stream, as maas-images' `promote`/`patch` flow does (meph2-util; docs/streams.md#retention-and-promotion): the
 * content id and product names get the new label, `label` is rewritten, and the items keep their
 * paths, so no file is copied. By default the newest version of each product is promoted.
 */
import { KilnError } from "../errors.js";
import { checkSigning, commitStream } from "./commit.js";
import { versionsNewestFirst, type ProductsFile } from "./format.js";
import { bootloaderContentId, imageContentId, relabelProductName, type StreamNaming } from "./names.js";
import { pruneVersions, type OrphanReport } from "./retention.js";
import type { Signer } from "./sign.js";
import { emptyProducts, StreamDir } from "./stream-dir.js";

export interface PromoteOptions {
  stream: string;
  from: string;
  to: string;
  naming: StreamNaming;
  /** Promote this version (of every product that has it) instead of each product's newest. */
  version?: string;
  keep?: number;
  graceSeconds: number;
  now: Date;
  signer?: Signer;
}

export interface PromoteReport {
  promoted: Array<{ from: string; to: string; version: string }>;
  already: Array<{ product: string; version: string }>;
  orphans: OrphanReport;
}

export async function promote(o: PromoteOptions): Promise<PromoteReport> {
  if (o.from === o.to) throw new KilnError("USAGE", `--from and --to are both ${o.from}`);
  const dir = new StreamDir(o.stream);
  const lock = await dir.lock();
  try {
    await checkSigning(dir, o.signer);
    const state = await dir.readState();
    const report: Omit<PromoteReport, "orphans"> = { promoted: [], already: [] };
    const changed: ProductsFile[] = [];
    for (const contentIdOf of [imageContentId, bootloaderContentId]) {
      const source = await dir.readProducts(contentIdOf(o.naming, o.from));
      if (!source) continue;
      const targetId = contentIdOf(o.naming, o.to);
      const target = (await dir.readProducts(targetId)) ?? emptyProducts(targetId, o.now);
      for (const [name, p] of Object.entries(source.products)) {
        const version = o.version ?? versionsNewestFirst(p)[0];
        if (!version || !p.versions[version]) continue;
        const newName = relabelProductName(o.naming, name, o.from, o.to);
        const { versions: _ignored, ...fields } = p;
        void _ignored;
        const existing = target.products[newName];
        if (existing?.versions[version]) {
          report.already.push({ product: newName, version });
          continue;
        }
        target.products[newName] = { ...fields, label: o.to, versions: { ...(existing?.versions ?? {}), [version]: structuredClone(p.versions[version]!) } };
        report.promoted.push({ from: name, to: newName, version });
      }
      if (o.keep !== undefined) pruneVersions(target, o.keep);
      changed.push(target);
    }
    if (changed.length === 0) throw new KilnError("INPUT_INVALID", `${dir.root}: no ${o.from} products to promote`);
    if (o.version && report.promoted.length + report.already.length === 0) throw new KilnError("INPUT_INVALID", `--version ${o.version}: no ${o.from} product has it`);
    const orphans = await commitStream(dir, changed, state, o);
    return { ...report, orphans };
  } finally {
    await lock.release();
  }
}
