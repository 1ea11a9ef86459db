/**
 * Artifact vocabulary, both of them: IMS media types (`type`) and simplestreams/MAAS file types
 * (`ftype`), see docs/architecture.md#artifacts. One table, so result.json, manifest.json and streams agree.
 */
export interface ArtifactKind {
  /** Name in result.json. */
  name: string;
  type: string;
  ftype: string;
  /**
   * Key of the object a service job uploads it as, under `<image_id>/` in the IMS bucket (IMS'
   * own names for the four it knows, the out dir's file name for the others): every kind with
   * one is an artifact of the image record, listed in its manifest.json (IMS clients skip the
   * types they do not know) and an item of the service's stream tree. Kinds without one stay in
   * the out dir.
   */
  imsKey?: string;
  /** One per kernel flavor (under `<flavor>/` in an out dir and a stream version). */
  perFlavor?: boolean;
}

export const ARTIFACT_KINDS = {
  squashfs: { name: "squashfs", type: "application/vnd.cray.image.rootfs.squashfs", ftype: "squashfs", imsKey: "rootfs" },
  // The package list MAAS requires beside every squashfs; IMS clients skip a type they do not know.
  manifest: { name: "squashfs.manifest", type: "text/tab-separated-values", ftype: "manifest", imsKey: "rootfs.manifest" },
  kernel: { name: "boot-kernel", type: "application/vnd.cray.image.kernel", ftype: "boot-kernel", imsKey: "kernel", perFlavor: true },
  initrd: { name: "boot-initrd", type: "application/vnd.cray.image.initrd", ftype: "boot-initrd", imsKey: "initrd", perFlavor: true },
  bootParams: { name: "boot-params", type: "application/vnd.cray.image.parameters.boot", ftype: "boot-params", imsKey: "boot_parameters", perFlavor: true },
  tarball: { name: "rootfs.tar.zst", type: "application/vnd.kiln.image.rootfs.tar+zstd", ftype: "root-tar.zst", imsKey: "rootfs.tar.zst" },
  // ftype disk1.img is the name Ubuntu's cloud-image streams give their qcow2 disks. The disk and
  // the ISO are made for the first kernel flavor, under its folder.
  qcow2: { name: "disk.qcow2", type: "application/x-qemu-disk", ftype: "disk1.img", imsKey: "disk.qcow2", perFlavor: true },
  iso: { name: "live.iso", type: "application/x-iso9660-image", ftype: "iso", imsKey: "live.iso", perFlavor: true },
  /** A live ISO with a site's cloud-init seed (kiln iso --seed): in result.json's `seeded`, never published. */
  seededIso: { name: "live-seeded.iso", type: "application/x-iso9660-image", ftype: "iso-seeded" },
  // Every package exactly, per root and flavor (docs/lock.md); `kiln build --lock` installs from it.
  lock: { name: "kiln.lock", type: "application/vnd.kiln.lock+json", ftype: "kiln.lock", imsKey: "kiln.lock" },
  // Attestations (docs/attest.md): SBOMs, provenance and checksums, each a file at the top of out/,
  // uploaded by service jobs under the same names so `kiln attest verify IMAGE_ID` finds them.
  sbomSpdx: { name: "sbom.spdx.json", type: "application/spdx+json", ftype: "sbom.spdx.json", imsKey: "sbom.spdx.json" },
  sbomCycloneDx: { name: "sbom.cdx.json", type: "application/vnd.cyclonedx+json", ftype: "sbom.cdx.json", imsKey: "sbom.cdx.json" },
  provenance: { name: "provenance.json", type: "application/vnd.in-toto+json", ftype: "provenance.json", imsKey: "provenance.json" },
  checksums: { name: "SHA256SUMS", type: "text/plain", ftype: "sha256sums", imsKey: "SHA256SUMS" },
  checksumsSignature: { name: "SHA256SUMS.gpg", type: "application/pgp-signature", ftype: "sha256sums.gpg", imsKey: "SHA256SUMS.gpg" },
} as const satisfies Record<string, ArtifactKind>;

/**
 * A verify boot's serial console log, as a service job uploads it beside the artifacts
 * (`<image_id>/logs/verify-<flavor>-<target>.log`, named in the image record's `kiln.verify`).
 * Not an artifact kind: no stream item, nothing to attest; it is in the uploaded manifest.json
 * only so that deleting, undeleting and purging the image move it with the rest.
 */
export const SERIAL_LOG_TYPE = "text/vnd.kiln.serial-log";

/** The kinds a service job uploads, by media type (first kind of a type wins). */
export function uploadedKindOf(type: string): ArtifactKind | undefined {
  return Object.values(ARTIFACT_KINDS as Record<string, ArtifactKind>).find((k) => k.type === type && k.imsKey !== undefined);
}

/**
 * Where an uploaded artifact sits in an out dir: `<flavor>/<name>` for a flavor's, else `<name>`
 * (stages place their files so, engine/out-dir.ts); undefined for a type no job uploads. The path
 * SHA256SUMS and provenance.json name it by, so a service image can be laid out as its out dir was.
 */
export function outPathOf(type: string, flavor: string | undefined): string | undefined {
  const k = uploadedKindOf(type);
  if (!k) return undefined;
  return flavor !== undefined && (k.perFlavor ?? false) ? `${flavor}/${k.name}` : k.name;
}

/**
 * The kernel command line a flavor's initrd needs to boot diskless, with the literal
 * `${squashfs_url}` where the squashfs URL goes. `root=squash:URL` is the form MAAS puts on its
 * ephemeral command lines; Kiln's initramfs hook (assets/initramfs) implements it.
 */
export function bootParams(extra: string[]): string {
  return ["root=squash:${squashfs_url}", "ip=dhcp", ...extra].join(" ");
}
