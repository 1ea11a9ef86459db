/**
 * The bootloader products MAAS needs to PXE/UEFI boot anything (docs/streams.md#bootloaders), made the way
 * maas-images' `meph2-import conf/bootloaders.yaml` makes them, from Debian's packages instead of
 * Ubuntu's: one `.tar.xz` per source package with the loader files at its top, named for MAAS
 * (it takes only the triples and item names below):
 *   grub-efi-signed/uefi/amd64: shim-signed (shimx64 as bootx64.efi) + grub2-signed (grubnetx64 as grubx64.efi)
 *   pxelinux/pxe/i386:          syslinux (pxelinux.0, lpxelinux.0 and the BIOS .c32 modules)
 * A new version (`YYYYMMDD.N`) is made only when a tarball's content changed, i.e. Debian updated
 * a package: the tarballs are reproducible (sorted, fixed owner, file times from the packages).
 */
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileDigests } from "../cache/key.js";
import { debianLinesFor, readHostSources } from "../host/apt-sources.js";
import { capture, exec, type LogSink } from "../host/exec.js";
import { KilnError } from "../errors.js";
import { checkSigning, commitStream } from "./commit.js";
import { versionsNewestFirst, type StreamItem } from "./format.js";
import { bootloaderContentId, bootloaderProductName, type StreamNaming } from "./names.js";
import { openPrivateApt } from "./private-apt.js";
import { pruneVersions, type OrphanReport } from "./retention.js";
import type { Signer } from "./sign.js";
import { emptyProducts, StreamDir } from "./stream-dir.js";

interface LoaderItem {
  /** Item name MAAS accepts (maas models.py BootloaderVersion). */
  item: string;
  packages: string[];
  /** Path in the package (glob `*` in the last part) and, optionally, the name in the tarball. */
  files: Array<[string, string?]>;
}

interface Loader {
  os: string;
  platform: string;
  arch: string;
  arches: string;
  items: LoaderItem[];
}

export const LOADERS: Loader[] = [
  {
    os: "grub-efi-signed",
    platform: "uefi",
    arch: "amd64",
    arches: "amd64",
    items: [
      { item: "shim-signed", packages: ["shim-signed"], files: [["usr/lib/shim/shimx64.efi.signed", "bootx64.efi"]] },
      { item: "grub2-signed", packages: ["grub-efi-amd64-signed"], files: [["usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed", "grubx64.efi"]] },
    ],
  },
  {
    // MAAS takes pxelinux only as i386 (MAAS' SUPPORTED_BOOTLOADERS); the files are the same on amd64.
    os: "pxelinux",
    platform: "pxe",
    arch: "i386",
    arches: "i386,amd64",
    items: [{ item: "syslinux", packages: ["pxelinux", "syslinux-common"], files: [["usr/lib/PXELINUX/pxelinux.0"], ["usr/lib/PXELINUX/lpxelinux.0"], ["usr/lib/syslinux/modules/bios/*.c32"]] }],
  },
];

export interface BootloaderOptions {
  to: string;
  label: string;
  naming: StreamNaming;
  /** Debian release the loaders come from (default: the host's). */
  release?: string;
  /** Where the private apt state lives (lists are reused between runs). */
  aptDir: string;
  keep?: number;
  graceSeconds: number;
  now: Date;
  signer?: Signer;
  log?: LogSink;
}

export interface BootloaderReport {
  products: Array<{ name: string; version: string; isNew: boolean; items: Record<string, string> }>;
  orphans: OrphanReport;
}

export async function publishBootloaders(o: BootloaderOptions): Promise<BootloaderReport> {
  const release = o.release ?? (await hostRelease());
  const lines = debianLinesFor(release, ["main"], await readHostSources());
  if (lines.length === 0) throw new KilnError("INPUT_INVALID", `bootloaders: this host has no Debian apt source for ${release}; add one or pass --release`);
  const apt = await openPrivateApt(o.aptDir, "amd64", { lines }, o.log);
  await apt.update();

  const dir = new StreamDir(o.to);
  await mkdir(dir.root, { recursive: true });
  const lock = await dir.lock();
  const work = await mkdtemp(path.join(os.tmpdir(), "kiln-bootloaders-"));
  try {
    await checkSigning(dir, o.signer);
    const contentId = bootloaderContentId(o.naming, o.label);
    const products = (await dir.readProducts(contentId)) ?? emptyProducts(contentId, o.now);
    const state = await dir.readState();
    const report: BootloaderReport["products"] = [];
    for (const loader of LOADERS) {
      const name = bootloaderProductName(o.naming, o.label, loader.os, loader.platform, loader.arch);
      const staged: Record<string, { file: string; item: Omit<StreamItem, "path"> }> = {};
      for (const li of loader.items) staged[li.item] = await packItem(apt, li, release, path.join(work, `${loader.os}-${li.item}`));
      const existing = products.products[name];
      const latest = existing ? versionsNewestFirst(existing)[0] : undefined;
      const latestItems = latest ? existing!.versions[latest]!.items : {};
      const same = Object.keys(staged).length === Object.keys(latestItems).length && Object.entries(staged).every(([k, s]) => latestItems[k]?.sha256 === s.item.sha256);
      if (same && latest) {
        report.push({ name, version: latest, isNew: false, items: Object.fromEntries(Object.entries(latestItems).map(([k, i]) => [k, String(i.src_version)])) });
        continue;
      }
      const version = await nextPointVersion(dir, `bootloaders/${loader.platform}/${loader.arch}`, existing ? Object.keys(existing.versions) : [], o.now);
      const items: Record<string, StreamItem> = {};
      for (const [k, s] of Object.entries(staged)) {
        const rel = `bootloaders/${loader.platform}/${loader.arch}/${version}/${k}.tar.xz`;
        await mkdir(path.dirname(dir.abs(rel)), { recursive: true });
        await copyFile(s.file, dir.abs(rel));
        items[k] = { ...s.item, path: rel } as StreamItem;
      }
      products.products[name] = {
        arch: loader.arch,
        arches: loader.arches,
        "bootloader-type": loader.platform,
        label: o.label,
        os: loader.os,
        versions: { ...(existing?.versions ?? {}), [version]: { items } },
      };
      report.push({ name, version, isNew: true, items: Object.fromEntries(Object.entries(items).map(([k, i]) => [k, String(i.src_version)])) });
    }
    // Nothing new from Debian: leave the stream as it is (no re-signing, no new `updated`).
    if (!report.some((p) => p.isNew)) return { products: report, orphans: { orphaned: [], reaped: [], waiting: {} } };
    if (o.keep !== undefined) pruneVersions(products, o.keep);
    const orphans = await commitStream(dir, [products], state, o);
    return { products: report, orphans };
  } finally {
    await rm(work, { recursive: true, force: true });
    await lock.release();
  }
}

/** Downloads the item's packages, extracts them and packs the chosen files into one reproducible tar.xz. */
async function packItem(apt: Awaited<ReturnType<typeof openPrivateApt>>, li: LoaderItem, release: string, work: string): Promise<{ file: string; item: Omit<StreamItem, "path"> }> {
  const debs = await apt.download(li.packages, path.join(work, "debs"));
  const tree = path.join(work, "tree");
  const stage = path.join(work, "stage");
  await mkdir(stage, { recursive: true });
  for (const d of debs) await exec(["dpkg-deb", "-x", d, tree]);
  const names: string[] = [];
  for (const [from, to] of li.files) {
    const dir = path.join(tree, path.dirname(from));
    const pattern = path.basename(from);
    const matches = pattern.includes("*")
      ? (await readdir(dir).catch(() => [] as string[])).filter((n) => new RegExp(`^${pattern.replace(/[.+?^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*")}$`).test(n))
      : [pattern];
    if (matches.length === 0) throw new KilnError("STAGE_FAILED", `bootloaders: ${li.packages.join(", ")} has no ${from}`);
    for (const m of matches) {
      const dest = to ?? m;
      await copyFile(path.join(dir, m), path.join(stage, dest)).catch(() => {
        throw new KilnError("STAGE_FAILED", `bootloaders: ${li.packages.join(", ")} has no ${path.join(path.dirname(from), m)}`);
      });
      const st = await stat(path.join(dir, m));
      await exec(["touch", "-d", `@${Math.floor(st.mtimeMs / 1000)}`, path.join(stage, dest)]);
      names.push(dest);
    }
  }
  const file = path.join(work, `${li.item}.tar.xz`);
  await exec(["tar", "--sort=name", "--owner=0", "--group=0", "--numeric-owner", "--mode=u=rw,go=r", "-cJf", file, "-C", stage, ...names.sort()], { env: { XZ_OPT: "-6 -T1" } });
  const fields = await capture(["dpkg-deb", "-f", debs[0]!, "Package", "Source", "Version"]);
  const f = Object.fromEntries(fields.split("\n").map((l) => [l.split(":")[0]!, l.slice(l.indexOf(":") + 1).trim()]));
  const src = /^(\S+)(?: \((\S+)\))?$/.exec(f.Source ?? "") ?? [];
  const d = await fileDigests(file);
  return {
    file,
    item: {
      ftype: "archive.tar.xz",
      sha256: d.sha256,
      size: d.size,
      src_package: src[1] ?? f.Package!,
      src_release: release,
      src_version: src[2] ?? f.Version!,
    },
  };
}

/** `YYYYMMDD.N` with N the first unused point (maas-images mimport.py), also skipping folders still on disk. */
async function nextPointVersion(dir: StreamDir, base: string, taken: string[], now: Date): Promise<string> {
  const day = now.toISOString().slice(0, 10).replaceAll("-", "");
  for (let n = 0; ; n++) {
    const v = `${day}.${n}`;
    if (taken.includes(v)) continue;
    if ((await stat(dir.abs(`${base}/${v}`)).catch(() => undefined)) !== undefined) continue;
    return v;
  }
}

async function hostRelease(): Promise<string> {
  const text = /^VERSION_CODENAME=("?)([a-z0-9.-]+)\1$/m.exec(await readFile("/etc/os-release", "utf8").catch(() => ""))?.[2];
  if (!text) throw new KilnError("USAGE", "bootloaders: cannot tell this host's Debian release; pass --release, e.g. bookworm");
  return text;
}
