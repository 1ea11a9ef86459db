/**
 * out/result.json and out/manifest.json. result.json is a contract other tools script against:
 * keep field names, extend only. manifest.json is the IMS image manifest (version 1.0, typed
 * artifacts with md5; docs/architecture.md#artifacts) with `file` links relative to the out dir; the service
 * rewrites them to s3 links when it uploads.
 */
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
  recipe: { name: string; sha256: string };
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

export function imsManifest(artifacts: ResultArtifact[], created: Date): ImsManifest {
  // IMS knows rootfs, kernel, initrd and boot parameters; the package list is not an IMS artifact.
  const imsTypes = new Set([
    "application/vnd.cray.image.rootfs.squashfs",
    "application/vnd.cray.image.kernel",
    "application/vnd.cray.image.initrd",
    "application/vnd.cray.image.parameters.boot",
    // Kiln's disk and live ISO: IMS stores any typed artifact; BOS boots only the four above.
    "application/x-qemu-disk",
    "application/x-iso9660-image",
    // The SBOMs (docs/attest.md): what is in the image, for whoever holds the IMS record.
    "application/spdx+json",
    "application/vnd.cyclonedx+json",
  ]);
  return {
    version: "1.0",
    created: imsTimestamp(created),
    artifacts: artifacts
      .filter((a) => imsTypes.has(a.type))
      .map((a) => ({ type: a.type, md5: a.md5, link: { type: "file" as const, path: a.path }, ...(a.flavor ? { flavor: a.flavor } : {}) })),
  };
}
