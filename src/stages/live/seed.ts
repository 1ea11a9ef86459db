/**
 * Seeded live ISOs: a build's ISO plus one site's cloud-init data, made in seconds by re-mastering
 * (iso-image.ts remasterIso: the squashfs, kernel and initrd are copied across byte for byte and
 * the boot setup is replayed). The ISO is its own cloud-init data source:
 *  - NoCloud: meta-data, user-data (network-config, vendor-data optional) at the ISO's root,
 *    volume label CIDATA, which cloud-init's NoCloud finds by label;
 *  - config drive: openstack/latest/meta_data.json (user_data, network_data.json optional) with
 *    the label config-2, as Airship's ephemeral ISO does.
 * The boot menu is unchanged: GRUB finds the medium by its file-system UUID, not its label.
 */
import { lstat, readFile, readdir, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { parse as parseYaml } from "yaml";
import type { BuildResult, SeededIso } from "../../artifacts/result.js";
import { ARTIFACT_KINDS } from "../../artifacts/types.js";
import { fileDigests } from "../../cache/key.js";
import { KilnError } from "../../errors.js";
import { exec, type LogSink } from "../../host/exec.js";
import { remasterIso } from "./iso-image.js";

export interface Seed {
  datasource: "nocloud" | "configdrive";
  label: string;
  hostname?: string;
  /** Path in the ISO → host file or folder. */
  files: Record<string, string>;
}

const NOCLOUD_FILES = ["meta-data", "user-data", "network-config", "vendor-data"];

/** Reads and checks a seed folder; INPUT_INVALID (exit 2) names what is wrong. */
export async function readSeed(dir: string): Promise<Seed> {
  const bad = (message: string, hint?: string) => new KilnError("INPUT_INVALID", `--seed ${dir}: ${message}`, { hint });
  const st = await lstat(dir).catch(() => undefined);
  if (!st?.isDirectory()) throw bad("not a folder", "give a folder with meta-data and user-data (NoCloud) or openstack/latest/meta_data.json (config drive)");
  const isFile = async (rel: string) => (await lstat(path.join(dir, rel)).catch(() => undefined))?.isFile() ?? false;

  if (await isFile("openstack/latest/meta_data.json")) {
    const meta = await readJson(path.join(dir, "openstack/latest/meta_data.json"), bad);
    if (await isFile("openstack/latest/network_data.json")) await readJson(path.join(dir, "openstack/latest/network_data.json"), bad);
    const files: Record<string, string> = { "/openstack": path.join(dir, "openstack") };
    if ((await lstat(path.join(dir, "ec2")).catch(() => undefined))?.isDirectory()) files["/ec2"] = path.join(dir, "ec2");
    const hostname = typeof meta.hostname === "string" ? meta.hostname : typeof meta.name === "string" ? meta.name : undefined;
    return { datasource: "configdrive", label: "config-2", ...(hostname ? { hostname } : {}), files };
  }

  const missing = [];
  for (const f of ["meta-data", "user-data"]) if (!(await isFile(f))) missing.push(f);
  if (missing.length > 0) {
    const there = (await readdir(dir).catch(() => [] as string[])).join(", ") || "nothing";
    throw bad(`has no ${missing.join(" and ")} (it has ${there})`, "a NoCloud seed needs meta-data and user-data (network-config is optional); a config drive needs openstack/latest/meta_data.json");
  }
  const meta = parseYaml(await readFile(path.join(dir, "meta-data"), "utf8"), { prettyErrors: false }) as unknown;
  if (meta !== null && (typeof meta !== "object" || Array.isArray(meta))) throw bad("meta-data: expected YAML key: value lines, e.g. \"instance-id: site-a-1\"");
  const md = (meta ?? {}) as Record<string, unknown>;
  const userData = await readFile(path.join(dir, "user-data"), "utf8");
  if (userData.startsWith("#cloud-config")) {
    try {
      parseYaml(userData);
    } catch (e) {
      throw bad(`user-data: not valid YAML (${(e as Error).message.split("\n")[0]})`);
    }
  }
  if (await isFile("network-config")) {
    let net: unknown;
    try {
      net = parseYaml(await readFile(path.join(dir, "network-config"), "utf8"));
    } catch (e) {
      throw bad(`network-config: not valid YAML (${(e as Error).message.split("\n")[0]})`);
    }
    const n = (net as { network?: unknown })?.network ?? net;
    const version = (n as { version?: unknown })?.version;
    if (version !== 1 && version !== 2) throw bad("network-config: expected cloud-init network config version 1 or 2 (version: 2, ethernets: …)");
  }
  const files: Record<string, string> = {};
  for (const f of NOCLOUD_FILES) if (await isFile(f)) files[`/${f}`] = path.join(dir, f);
  const hostname = typeof md["local-hostname"] === "string" ? md["local-hostname"] : typeof md.hostname === "string" ? md.hostname : undefined;
  return { datasource: "nocloud", label: "CIDATA", ...(hostname ? { hostname } : {}), files };
}

async function readJson(file: string, bad: (m: string) => KilnError): Promise<Record<string, unknown>> {
  try {
    const v = JSON.parse(await readFile(file, "utf8")) as unknown;
    if (typeof v !== "object" || v === null || Array.isArray(v)) throw new Error("not a JSON object");
    return v as Record<string, unknown>;
  } catch (e) {
    throw bad(`${path.basename(file)}: ${(e as Error).message}`);
  }
}

/** "Site A/" → "site-a": the name in the file and the verify target. */
export function seedName(given: string | undefined, dir: string): string {
  const name = (given ?? path.basename(path.resolve(dir))).toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "");
  if (!/^[a-z0-9][a-z0-9-]{0,62}$/.test(name)) throw new KilnError("USAGE", `--name ${JSON.stringify(given ?? dir)}: give a name of letters, digits and "-", e.g. --name site-a`);
  return name;
}

export interface SeedIsoOptions {
  seedDir: string;
  name?: string;
  log?: LogSink;
  signal?: AbortSignal;
  workDir?: string;
}

/** Makes <out>/<flavor>/live-<name>.iso from the build's ISO and the seed, and records it in result.json's `seeded`. */
export async function seedIso(outDir: string, result: BuildResult, o: SeedIsoOptions): Promise<SeededIso> {
  const iso = result.artifacts.find((a) => a.ftype === ARTIFACT_KINDS.iso.ftype);
  if (!iso) {
    throw new KilnError("INPUT_INVALID", `${path.join(outDir, "result.json")}: this build has no live ISO to seed`, { hint: "add iso to the recipe's outputs and build again" });
  }
  const seed = await readSeed(o.seedDir);
  const name = seedName(o.name, o.seedDir);
  const rel = `${iso.flavor ?? "."}/live-${name}.iso`;
  const out = path.join(outDir, rel);
  await rm(out, { force: true }); // xorriso would take an existing -outdev as an ISO to add to
  const t0 = Date.now();
  await remasterIso((argv) => exec(argv, { log: o.log, signal: o.signal, workDir: o.workDir }), {
    iso: path.join(outDir, iso.path),
    out,
    label: seed.label,
    add: seed.files,
  });
  const seconds = Math.round((Date.now() - t0) / 100) / 10;
  const kind = ARTIFACT_KINDS.seededIso;
  const entry: SeededIso = {
    name: kind.name,
    path: rel,
    type: kind.type,
    ftype: kind.ftype,
    ...(iso.flavor ? { flavor: iso.flavor } : {}),
    ...(iso.kpackage ? { kpackage: iso.kpackage } : {}),
    ...(iso.kernelVersion ? { kernelVersion: iso.kernelVersion } : {}),
    ...(await fileDigests(out)),
    seed: { name, dir: path.resolve(o.seedDir), datasource: seed.datasource, ...(seed.hostname ? { hostname: seed.hostname } : {}), seconds },
  };
  const file = path.join(outDir, "result.json");
  const current = JSON.parse(await readFile(file, "utf8")) as BuildResult;
  current.seeded = [...(current.seeded ?? []).filter((s) => s.path !== rel), entry];
  // A verify result of an earlier ISO of this name says nothing about this one.
  current.verify = (current.verify ?? []).filter((v) => v.target !== `iso-seeded:${name}`);
  const tmp = `${file}.tmp-${process.pid}`;
  await writeFile(tmp, JSON.stringify(current, null, 2) + "\n");
  await rename(tmp, file);
  return entry;
}
