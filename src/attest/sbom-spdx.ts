/**
 * out/sbom.spdx.json: an SPDX 2.3 document (https://spdx.github.io/spdx-spec/v2.3/) describing
 * the image. The image is the described package; it CONTAINS its artifacts (packages of purpose
 * FILE with their sha256 and md5), the Debian packages of its root and one package per flavor,
 * which CONTAINS the packages that flavor adds and its own artifacts (kernel, initrd, …).
 * Debian packages DEPENDS_ON the installed packages that satisfy their Depends/Pre-Depends.
 */
import { createHash } from "node:crypto";
import type { ResultArtifact } from "../artifacts/result.js";
import { PackageURL } from "packageurl-js";
import { debPurl, type DebPackage } from "./debian.js";
import { allPackages, flavorInstalled, inventoryIdentity, isoSeconds, resolveDepends, type ImageInventory } from "./inventory.js";

interface SpdxPackage {
  SPDXID: string;
  name: string;
  versionInfo?: string;
  packageFileName?: string;
  downloadLocation: "NOASSERTION";
  filesAnalyzed: false;
  primaryPackagePurpose: "OPERATING_SYSTEM" | "FILE" | "INSTALL";
  supplier?: string;
  sourceInfo?: string;
  checksums?: Array<{ algorithm: "SHA256" | "MD5"; checksumValue: string }>;
  licenseConcluded: "NOASSERTION";
  licenseDeclared: string;
  copyrightText: "NOASSERTION";
  externalRefs?: Array<{ referenceCategory: "PACKAGE-MANAGER"; referenceType: "purl"; referenceLocator: string }>;
  comment?: string;
}

export interface SpdxDocument {
  spdxVersion: "SPDX-2.3";
  dataLicense: "CC0-1.0";
  SPDXID: "SPDXRef-DOCUMENT";
  name: string;
  documentNamespace: string;
  creationInfo: { created: string; creators: string[] };
  documentDescribes: string[];
  packages: SpdxPackage[];
  relationships: Array<{ spdxElementId: string; relationshipType: "DESCRIBES" | "CONTAINS" | "DEPENDS_ON"; relatedSpdxElement: string }>;
  hasExtractedLicensingInfos?: Array<{ licenseId: string; name: string; extractedText: string }>;
}

const IMAGE_ID = "SPDXRef-Image";
const SOURCE_INFO = "built from Debian source package ";
/** SPDX ids allow letters, digits, "." and "-": a readable part and a digest part that keeps them unique. */
const idOf = (kind: string, readable: string, unique: string) =>
  `SPDXRef-${kind}-${readable.replace(/[^A-Za-z0-9.-]+/g, "-")}-${createHash("sha256").update(unique).digest("hex").slice(0, 12)}`;
const flavorId = (flavor: string) => idOf("Flavor", flavor, flavor);
const artifactId = (a: ResultArtifact) => idOf("Artifact", a.path, a.path);
const debId = (purl: string, p: DebPackage) => idOf("deb", p.name, purl);

export function spdxSbom(inv: ImageInventory): SpdxDocument {
  const packages: SpdxPackage[] = [];
  const relationships: SpdxDocument["relationships"] = [{ spdxElementId: "SPDXRef-DOCUMENT", relationshipType: "DESCRIBES", relatedSpdxElement: IMAGE_ID }];
  const contains = (a: string, b: string) => relationships.push({ spdxElementId: a, relationshipType: "CONTAINS", relatedSpdxElement: b });
  const none = { downloadLocation: "NOASSERTION", filesAnalyzed: false, licenseConcluded: "NOASSERTION", copyrightText: "NOASSERTION" } as const;

  packages.push({ SPDXID: IMAGE_ID, name: inv.name, ...none, primaryPackagePurpose: "OPERATING_SYSTEM", licenseDeclared: "NOASSERTION", comment: `Built by Kiln ${inv.kilnVersion} ${inv.madeFrom ?? `from a recipe with sha256 ${inv.recipeSha256}`}` });
  for (const f of inv.flavors) {
    packages.push({ SPDXID: flavorId(f.flavor), name: `${inv.name} flavor ${f.flavor}`, ...none, primaryPackagePurpose: "OPERATING_SYSTEM", licenseDeclared: "NOASSERTION" });
    contains(IMAGE_ID, flavorId(f.flavor));
  }
  for (const a of inv.artifacts) {
    packages.push({
      SPDXID: artifactId(a),
      name: a.path,
      packageFileName: a.path,
      ...none,
      primaryPackagePurpose: "FILE",
      checksums: [
        { algorithm: "SHA256", checksumValue: a.sha256 },
        { algorithm: "MD5", checksumValue: a.md5 },
      ],
      licenseDeclared: "NOASSERTION",
      comment: `${a.type}${a.flavor ? `, flavor ${a.flavor}` : ""}`,
    });
    contains(a.flavor && inv.flavors.some((f) => f.flavor === a.flavor) ? flavorId(a.flavor) : IMAGE_ID, artifactId(a));
  }

  const all = allPackages(inv);
  const idFor = (p: DebPackage) => debId(debPurl(p, inv), p);
  const refs: Record<string, string> = {};
  for (const e of all) {
    const p = e.pkg;
    Object.assign(refs, p.licenseRefs);
    packages.push({
      SPDXID: idFor(p),
      name: p.name,
      versionInfo: p.version,
      ...none,
      primaryPackagePurpose: "INSTALL",
      supplier: "Organization: Debian",
      ...(p.source ? { sourceInfo: `${SOURCE_INFO}${p.source}` } : {}),
      ...(p.debSha256 ? { checksums: [{ algorithm: "SHA256" as const, checksumValue: p.debSha256 }] } : { comment: "The .deb was no longer at hand when this SBOM was written: its checksum is not stated." }),
      licenseDeclared: p.license,
      externalRefs: [{ referenceCategory: "PACKAGE-MANAGER", referenceType: "purl", referenceLocator: e.purl }],
    });
    if (e.inRoot) contains(IMAGE_ID, idFor(p));
    for (const f of e.flavors) contains(flavorId(f), idFor(p));
  }
  // Dependencies: a root package's within the root; a flavor's within the root plus what the flavor adds.
  const depend = (p: DebPackage, installed: readonly DebPackage[]) => {
    for (const d of resolveDepends(p, installed)) relationships.push({ spdxElementId: idFor(p), relationshipType: "DEPENDS_ON", relatedSpdxElement: idFor(d) });
  };
  for (const p of inv.root) depend(p, inv.root);
  for (const f of inv.flavors) {
    const installed = flavorInstalled(inv, f);
    for (const p of f.packages) depend(p, installed);
  }
  const seen = new Set<string>();
  const unique = relationships.filter((r) => {
    const k = `${r.spdxElementId} ${r.relationshipType} ${r.relatedSpdxElement}`;
    return seen.has(k) ? false : (seen.add(k), true);
  });

  const refIds = Object.keys(refs).sort();
  return {
    spdxVersion: "SPDX-2.3",
    dataLicense: "CC0-1.0",
    SPDXID: "SPDXRef-DOCUMENT",
    name: `${inv.name} image`,
    documentNamespace: `https://spdx.org/spdxdocs/kiln-${inv.name.replace(/[^A-Za-z0-9.-]+/g, "-")}-${inventoryIdentity(inv, "spdx")}`,
    creationInfo: { created: isoSeconds(inv.created), creators: [`Tool: kiln-${inv.kilnVersion}`] },
    documentDescribes: [IMAGE_ID],
    packages,
    relationships: unique,
    ...(refIds.length
      ? {
          hasExtractedLicensingInfos: refIds.map((id) => ({
            licenseId: id,
            name: refs[id]!,
            extractedText: `The license Debian's machine-readable copyright files name "${refs[id]!}"; its text is in /usr/share/doc/<package>/copyright of each package that declares it.`,
          })),
        }
      : {}),
  };
}

/**
 * The packages an SPDX document of Kiln's (spdxSbom) lists for one flavor, as DebPackages again: a
 * customized image carries a flavor's kernel and initrd over from its source image without its
 * kernel layer, so the source's SBOM is the record of what that flavor added. Dependencies come
 * back as the names the source resolved them to (DEPENDS_ON), licenses with their LicenseRef names.
 * Returns undefined when the document lists no such flavor.
 */
export function spdxFlavorPackages(doc: SpdxDocument, flavor: string): DebPackage[] | undefined {
  const fid = flavorId(flavor);
  if (!doc.packages?.some((p) => p.SPDXID === fid)) return undefined;
  const byId = new Map(doc.packages.map((p) => [p.SPDXID, p]));
  const rels = Array.isArray(doc.relationships) ? doc.relationships : [];
  const refNames = new Map((doc.hasExtractedLicensingInfos ?? []).map((l) => [l.licenseId, l.name]));
  const out: DebPackage[] = [];
  for (const r of rels) {
    if (r.spdxElementId !== fid || r.relationshipType !== "CONTAINS") continue;
    const p = byId.get(r.relatedSpdxElement);
    const purl = p?.externalRefs?.find((e) => e.referenceType === "purl")?.referenceLocator;
    if (!p || p.primaryPackagePurpose !== "INSTALL" || !purl || !p.versionInfo) continue;
    let arch: string | undefined;
    try {
      arch = PackageURL.fromString(purl).qualifiers?.arch;
    } catch {
      continue; // not a purl Kiln wrote
    }
    if (!arch) continue;
    const refs = p.licenseDeclared?.match(/LicenseRef-[A-Za-z0-9.-]+/g) ?? [];
    // A LicenseRef the document does not name could not be declared again: no assertion then.
    const license = p.licenseDeclared && refs.every((id) => refNames.has(id)) ? p.licenseDeclared : "NOASSERTION";
    const depends = rels
      .filter((d) => d.spdxElementId === p.SPDXID && d.relationshipType === "DEPENDS_ON")
      .map((d) => byId.get(d.relatedSpdxElement)?.name)
      .filter((n): n is string => typeof n === "string")
      .map((n) => [n]);
    out.push({
      name: p.name,
      version: p.versionInfo,
      arch,
      ...(p.sourceInfo?.startsWith(SOURCE_INFO) ? { source: p.sourceInfo.slice(SOURCE_INFO.length) } : {}),
      depends,
      provides: [],
      license,
      licenseRefs: license === "NOASSERTION" ? {} : Object.fromEntries(refs.map((id) => [id, refNames.get(id)!])),
      ...(p.checksums?.find((c) => c.algorithm === "SHA256") ? { debSha256: p.checksums.find((c) => c.algorithm === "SHA256")!.checksumValue } : {}),
    });
  }
  return out;
}
