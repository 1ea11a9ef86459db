/**
 * apt on the host with private state, as devscripts' chdist does: its own sources, pins, lists
 * and package cache in one folder, the host's trusted keys, proxies and apt.conf.d. Sync asks it
 * which version of each package the recipe's sources would install now; the bootloader product
 * downloads Debian's signed loaders with it. apt does what it always does here: verifies the
 * archive's InRelease, honours pins, picks the candidate.
 */
import { copyFile, mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { capture, exec, type LogSink } from "../host/exec.js";

export interface PrivateAptSources {
  /** `deb [options] URI SUITE COMPONENTS…` lines. */
  lines: string[];
  /** Extra repositories, each with its own key and pin. */
  repositories?: Array<{ name: string; uri: string; suite: string; components: string[]; pin?: number; keyFile?: string }>;
  /** apt preferences text added as is (e.g. the packages stage's temporary upgrade pin). */
  preferences?: string;
}

export interface PrivateApt {
  /** `apt-get update` into the private lists. */
  update(): Promise<void>;
  /** Candidate version of each package (name or name:arch); packages apt does not know are absent. */
  candidates(packages: string[]): Promise<Map<string, string>>;
  /** A field of the candidate version's record (`apt-cache show`), e.g. Depends or Source. */
  showCandidate(pkg: string): Promise<Record<string, string> | undefined>;
  /** Downloads the candidate .deb of each package into `dest`; returns the file paths. */
  download(packages: string[], dest: string): Promise<string[]>;
}

export async function openPrivateApt(dir: string, arch: string, sources: PrivateAptSources, log?: LogSink): Promise<PrivateApt> {
  const d = path.resolve(dir);
  for (const sub of ["state/lists/partial", "cache/archives/partial", "sources.list.d", "preferences.d", "keys"]) await mkdir(path.join(d, sub), { recursive: true });
  await writeFile(path.join(d, "status"), "");
  const lines = [...sources.lines];
  let prefs = sources.preferences ?? "";
  for (const r of sources.repositories ?? []) {
    let opt = "";
    if (r.keyFile) {
      const armored = (await readFile(r.keyFile)).subarray(0, 64).toString("latin1").includes("-----BEGIN PGP");
      const key = path.join(d, "keys", `${r.name}.${armored ? "asc" : "gpg"}`);
      await copyFile(r.keyFile, key);
      opt = ` [signed-by=${key}]`;
    }
    lines.push(`deb${opt} ${r.uri} ${r.suite} ${r.components.join(" ")}`);
    if (r.pin !== undefined) prefs += `\nPackage: *\nPin: release n=${r.suite}\nPin-Priority: ${r.pin}\n`;
  }
  await writeFile(path.join(d, "sources.list"), lines.join("\n") + "\n");
  await writeFile(path.join(d, "preferences"), prefs.trim() + "\n");
  const o = [
    `Dir::State=${d}/state`,
    `Dir::State::status=${d}/status`,
    `Dir::Cache=${d}/cache`,
    `Dir::Etc::SourceList=${d}/sources.list`,
    `Dir::Etc::SourceParts=${d}/sources.list.d`,
    `Dir::Etc::Preferences=${d}/preferences`,
    `Dir::Etc::PreferencesParts=${d}/preferences.d`,
    `APT::Architecture=${arch}`,
    `APT::Architectures=${arch}`,
    "Acquire::Languages=none",
    "Debug::NoLocking=1",
    // The private folder belongs to whoever runs kiln; apt's _apt sandbox user could not write it.
    "APT::Sandbox::User=root",
  ].flatMap((x) => ["-o", x]);
  const env = { LC_ALL: "C.UTF-8", DEBIAN_FRONTEND: "noninteractive" };
  return {
    update: async () => {
      await exec(["apt-get", ...o, "-q", "update"], { env, log });
    },
    candidates: async (packages) => {
      const out = new Map<string, string>();
      if (packages.length === 0) return out;
      const text = await capture(["apt-cache", ...o, "policy", ...packages], { env, log, okCodes: [0, 100] });
      let current: string | undefined;
      for (const line of text.split("\n")) {
        const head = /^(\S+):$/.exec(line);
        if (head) current = head[1];
        const cand = /^\s+Candidate: (\S+)/.exec(line);
        if (cand && current && cand[1] !== "(none)") out.set(current.replace(/:[a-z0-9]+$/, ""), cand[1]!);
      }
      return out;
    },
    showCandidate: async (pkg) => {
      const text = await capture(["apt-cache", ...o, "show", "--no-all-versions", pkg], { env, log, okCodes: [0, 100] });
      if (!text.trim()) return undefined;
      const fields: Record<string, string> = {};
      let last = "";
      for (const line of text.split("\n")) {
        if (line === "") break; // the first record is the candidate
        const m = /^([A-Za-z0-9-]+):\s?(.*)$/.exec(line);
        if (m) fields[(last = m[1]!)] = m[2]!;
        else if (last && line.startsWith(" ")) fields[last] += "\n" + line;
      }
      return fields;
    },
    download: async (packages, dest) => {
      await mkdir(dest, { recursive: true });
      // apt-get download verifies each .deb against the signed index before keeping it.
      await exec(["apt-get", ...o, "-q", "download", ...packages], { env, log, cwd: dest });
      const names = (await readdir(dest)).filter((n) => n.endsWith(".deb"));
      return packages.map((p) => {
        const f = names.find((n) => n.startsWith(`${p}_`));
        if (!f) throw new Error(`apt-get download ${p}: no .deb appeared in ${dest}`);
        return path.join(dest, f);
      });
    },
  };
}
