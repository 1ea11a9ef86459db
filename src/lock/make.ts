/**
 * Writes out/kiln.lock from a build's layers: the packages dpkg lists as installed in the sealed
 * root and in each flavor's root (read-only overlays of the layers), each with the suite and the
 * .deb sha256 the apt indexes of the stages that installed it recorded (facts.aptIndex), else the
 * sha256 of the .deb in Kiln's apt archive cache. With `--lock`, what was installed is compared
 * with the lock it was built from: a build that installed another version fails.
 */
import { writeFile } from "node:fs/promises";
import path from "node:path";
import type { ResultArtifact } from "../artifacts/result.js";
import { ARTIFACT_KINDS } from "../artifacts/types.js";
import { DebDigestCache, debDigest, parseDpkgStatus, readInRoot } from "../attest/debian.js";
import { fileDigests } from "../cache/key.js";
import { KilnError } from "../errors.js";
import type { LogSink } from "../host/exec.js";
import { mountOverlay } from "../host/mount.js";
import { Scope } from "../host/scope.js";
import { indexKey, mergeIndexes, type AptIndex } from "./apt-index.js";
import { flavorPackages, formatLock, lockMismatches, LOCK_VERSION, type KilnLock, type LockedPackage } from "./lock.js";

export interface MakeLockOptions {
  out: string;
  workDir: string;
  arch: string;
  /** The sealed root's trees, top first, and the apt indexes its stages recorded, bottom first. */
  root: { lower: string[]; indexes: Array<AptIndex | undefined> };
  flavors: Array<{ flavor: string; lower: string[]; index: AptIndex | undefined }>;
  base?: { file: string; sha256: string };
  aptArchives: string;
  /** The lock this build was made from (--lock), to check against. */
  locked?: { lock: KilnLock; file: string };
  log: LogSink;
}

export async function makeLock(o: MakeLockOptions): Promise<{ lock: KilnLock; artifact: ResultArtifact }> {
  await using scope = new Scope();
  const view = async (name: string, lower: string[]) =>
    scope.use(await mountOverlay(path.join(o.workDir, "mnt", `lock-${name.replace(/[^a-z0-9-]/gi, "-")}`), { lower }, { log: o.log, workDir: o.workDir })).path;
  const digests = await DebDigestCache.open(path.join(path.dirname(o.aptArchives), "deb-sha256.json"));
  const rootIndex = mergeIndexes(o.root.indexes);
  const read = async (dir: string, index: AptIndex): Promise<LockedPackage[]> => {
    const list: LockedPackage[] = [];
    for (const p of parseDpkgStatus((await readInRoot(dir, "/var/lib/dpkg/status")) ?? "")) {
      const i = index.packages[indexKey(p)];
      const sha256 = i?.sha256 ?? (await debDigest(p, [o.aptArchives], digests));
      list.push({ name: p.name, version: p.version, arch: p.arch, ...(i ? { suite: i.suite } : {}), ...(sha256 ? { sha256 } : {}) });
    }
    return list;
  };
  const root = await read(await view("root", o.root.lower), rootIndex);
  const inRoot = new Set(root.map((p) => `${p.name} ${p.version} ${p.arch}`));
  const flavors: KilnLock["flavors"] = {};
  const all = [rootIndex];
  for (const f of o.flavors) {
    const index = mergeIndexes([rootIndex, f.index]);
    all.push(index);
    flavors[f.flavor] = (await read(await view(`flavor-${f.flavor}`, f.lower), index)).filter((p) => !inRoot.has(`${p.name} ${p.version} ${p.arch}`));
  }
  await digests.save();
  const lock: KilnLock = { kilnLock: LOCK_VERSION, arch: o.arch, ...(o.base ? { base: { image: o.base } } : {}), sources: mergeIndexes(all).sources, root, flavors };
  const noSum = [...root, ...Object.values(flavors).flat()].filter((p) => !p.sha256);
  if (noSum.length) o.log.line(`lock: no index entry or .deb for ${noSum.length} packages (listed without sha256): ${noSum.slice(0, 20).map((p) => p.name).join(" ")}${noSum.length > 20 ? " …" : ""}`);
  if (o.locked) {
    const wrong = [
      ...lockMismatches(o.locked.lock.root, root),
      ...o.flavors.flatMap((f) => lockMismatches(flavorPackages(o.locked!.lock, f.flavor), flavorPackages(lock, f.flavor)).map((m) => `${f.flavor}: ${m}`)),
    ];
    const uniq = [...new Set(wrong)];
    if (uniq.length) {
      throw new KilnError("STAGE_FAILED", `--lock ${o.locked.file}: the build did not install what the lock says: ${uniq.join("; ")}`, {
        hint: "a stage installed a version the lock does not pin, or a script upgraded a package: see the stage logs",
      });
    }
    o.log.line(`lock: every package installed is the version ${o.locked.file} names`);
  }
  const kind = ARTIFACT_KINDS.lock;
  const file = path.join(o.out, kind.name);
  await writeFile(file, formatLock(lock));
  return { lock, artifact: { name: kind.name, path: kind.name, type: kind.type, ftype: kind.ftype, ...(await fileDigests(file)) } };
}
