/**
 * out/result.json and out/manifest.json. result.json is a contract other tools script against:
 * keep field names, extend only. manifest.json is the IMS image manifest (version 1.0, typed
 * artifacts with md5; ims-notes §2.1) with `file` links relative to the out dir; the service
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
  ]);
  return {
    version: "1.0",
    created: imsTimestamp(created),
    artifacts: artifacts
      .filter((a) => imsTypes.has(a.type))
      .map((a) => ({ type: a.type, md5: a.md5, link: { type: "file" as const, path: a.path }, ...(a.flavor ? { flavor: a.flavor } : {}) })),
  };
}
