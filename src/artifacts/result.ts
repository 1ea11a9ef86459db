/**
 * out/result.json and out/manifest.json. result.json is a contract other tools script against:
 * keep field names, extend only. manifest.json is the IMS image manifest (version 1.0, typed
 * artifacts with md5; docs/architecture.md#artifacts) with `file` links relative to the out dir; the service
 * rewrites them to s3 links when it uploads.
 */
import { readFile } from "node:fs/promises";
import path from "node:path";
import { KilnError } from "../errors.js";
import { ARTIFACT_KINDS } from "./types.js";

export interface ResultArtifact {
  name: string;
  path: string;
  type: string;
  ftype: string;
  sha256: string;
  md5: string;
  size: number;
  flavor?: string;
  kpackage?: string;
  kernelVersion?: string;
}

export interface ResultStage {
  name: string;
  key: string;
  cached: boolean;
  seconds: number;
}

export interface VerifyEntry {
  flavor: string;
  ok: boolean;
  seconds: number;
  log: string;
  reason?: string;
  /**
   * What was booted; absent in entries written before disks and ISOs: "pxe" (kernel + initrd, root
   * over HTTP), "qcow2-bios", "qcow2-uefi", "iso-bios" (as a CD), "iso-uefi" (as a USB stick),
   * "iso-seeded:<name>" (a seeded ISO as a CD, UEFI).
   */
  target?: string;
  firmware?: "bios" | "uefi";
  /** UEFI boots: the kernel said Secure Boot was on (shim, signed GRUB and kernel all verified). */
  secureBoot?: boolean;
  /** Seeded ISOs: the hostname the booted guest had, which cloud-init took from the seed. */
  hostname?: string;
  /** Not booted this time: an earlier boot of the very same bytes with the same harness passed (src/verify/boot-cache.ts). */
  cached?: boolean;
}

/** A seeded live ISO made by `kiln iso OUT --seed DIR`: site data, kept apart from the published artifacts. */
export interface SeededIso extends ResultArtifact {
  seed: {
    /** The --name, also in the file name and the verify target. */
    name: string;
    /** The seed folder, as given. */
    dir: string;
    datasource: "nocloud" | "configdrive";
    /** The hostname the seed's meta data gives, which verify expects to see. */
    hostname?: string;
    /** Seconds the re-master took. */
    seconds: number;
  };
}

/** What the image is, for publishers (simplestreams products need os, release and arch). */
export interface ResultImage {
  /** dpkg architecture of the root, e.g. amd64. */
  arch: string;
  /** "debian" for a bootstrapped root; absent for an import (Kiln does not guess). */
  os?: string;
  /** Suite or codename the root was bootstrapped from, e.g. bookworm. */
  release?: string;
}

export interface BuildResult {
  /** `file`: the recipe's absolute path as built (added with kiln.lock; `kiln rebuild` builds it again, docs/lock.md). */
  recipe: { name: string; sha256: string; file?: string };
  /** A locked build (`--lock`): the lock it was built from, its absolute path and sha256. */
  lock?: { file: string; sha256: string };
  /** Added after 0.1: absent in result.json files written before it. */
  image?: ResultImage;
  stages: ResultStage[];
  artifacts: ResultArtifact[];
  verify: VerifyEntry[];
  /** Seeded live ISOs (kiln iso --seed), newest last; absent until one is made. */
  seeded?: SeededIso[];
  /** Kiln additions. */
  kiln: { version: string; created: string; seconds: number; unchangedImport: boolean };
}

export interface ImsManifest {
  version: "1.0";
  created: string;
  artifacts: Array<{ type: string; md5: string; link: { type: "file"; path: string }; flavor?: string }>;
}

/** IMS' `created` format: "%Y-%m-%d %H:%M:%S" (UTC). */
export function imsTimestamp(d: Date): string {
  return d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "");
}

/**
 * The artifact kinds manifest.json lists. IMS knows rootfs, kernel, initrd and boot parameters
 * (BOS boots only those); it stores any typed artifact, so Kiln's disk and live ISO go in too, and
 * the SBOMs (docs/attest.md: what is in the image, for whoever holds the IMS record) and the
 * package lock (docs/lock.md: to rebuild it).
 * The package list and the tarball are not IMS artifacts.
 */
const IMS_TYPES: ReadonlySet<string> = new Set(
  [ARTIFACT_KINDS.squashfs, ARTIFACT_KINDS.kernel, ARTIFACT_KINDS.initrd, ARTIFACT_KINDS.bootParams, ARTIFACT_KINDS.qcow2, ARTIFACT_KINDS.iso, ARTIFACT_KINDS.sbomSpdx, ARTIFACT_KINDS.sbomCycloneDx, ARTIFACT_KINDS.lock].map((k) => k.type),
);

export function imsManifest(artifacts: ResultArtifact[], created: Date): ImsManifest {
  return {
    version: "1.0",
    created: imsTimestamp(created),
    artifacts: artifacts
      .filter((a) => IMS_TYPES.has(a.type))
      .map((a) => ({ type: a.type, md5: a.md5, link: { type: "file" as const, path: a.path }, ...(a.flavor ? { flavor: a.flavor } : {}) })),
  };
}

/** An out dir's result.json, read for `kiln attest verify` and `kiln rebuild`: exit 2 naming the dir when it is none. */
export async function readOutResult(out: string): Promise<BuildResult> {
  let text: string;
  try {
    text = await readFile(path.join(out, "result.json"), "utf8");
  } catch (e) {
    throw new KilnError("USAGE", `${out}: not a Kiln out dir (no result.json: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, { hint: "give the --out dir of a kiln build" });
  }
  try {
    const r = JSON.parse(text) as BuildResult;
    if (!Array.isArray(r.artifacts) || typeof r.recipe?.sha256 !== "string") throw new Error("no artifacts or recipe digest");
    return r;
  } catch (e) {
    throw new KilnError("INPUT_INVALID", `${out}/result.json: not a Kiln result (${(e as Error).message})`);
  }
}
