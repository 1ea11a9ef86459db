/**
 * out/sbom.cdx.json: a CycloneDX 1.6 BOM (https://cyclonedx.org/docs/1.6/json/) of the image. The
 * image is metadata.component; its artifacts are components of type file with SHA-256 and MD5;
 * each flavor is a component of type operating-system; Debian packages are components with their
 * purl as bom-ref, the .deb's SHA-256 and an SPDX license expression. The dependency graph says
 * what the image, each flavor and each package depends on.
 */
import type { DebPackage } from "./debian.js";
import { debPurl } from "./debian.js";
import { allPackages, flavorInstalled, inventoryIdentity, isoSeconds, resolveDepends, type ImageInventory } from "./inventory.js";

interface CdxComponent {
  type: "operating-system" | "file" | "library";
  "bom-ref": string;
  name: string;
  version?: string;
  purl?: string;
  supplier?: { name: string };
  hashes?: Array<{ alg: "SHA-256" | "MD5"; content: string }>;
  licenses?: Array<{ expression: string }>;
  description?: string;
  properties?: Array<{ name: string; value: string }>;
}

export interface CdxBom {
  $schema: string;
  bomFormat: "CycloneDX";
  specVersion: "1.6";
  serialNumber: string;
  version: 1;
  metadata: {
    timestamp: string;
    tools: { components: Array<{ type: "application"; name: string; version: string }> };
    component: CdxComponent;
  };
  components: CdxComponent[];
  dependencies: Array<{ ref: string; dependsOn: string[] }>;
}

const IMAGE_REF = "kiln:image";
const flavorRef = (flavor: string) => `kiln:flavor:${flavor}`;
const artifactRef = (p: string) => `kiln:artifact:${p}`;

export function cyclonedxSbom(inv: ImageInventory): CdxBom {
  const purl = (p: DebPackage) => debPurl(p, inv);
  const components: CdxComponent[] = [];
  for (const f of inv.flavors) components.push({ type: "operating-system", "bom-ref": flavorRef(f.flavor), name: `${inv.name} flavor ${f.flavor}` });
  for (const a of inv.artifacts) {
    components.push({
      type: "file",
      "bom-ref": artifactRef(a.path),
      name: a.path,
      hashes: [
        { alg: "SHA-256", content: a.sha256 },
        { alg: "MD5", content: a.md5 },
      ],
      description: a.type,
      properties: [{ name: "kiln:artifact", value: a.name }, ...(a.flavor ? [{ name: "kiln:flavor", value: a.flavor }] : [])],
    });
  }
  const all = allPackages(inv);
  for (const e of all) {
    const p = e.pkg;
    components.push({
      type: "library",
      "bom-ref": e.purl,
      name: p.name,
      version: p.version,
      purl: e.purl,
      supplier: { name: "Debian" },
      ...(p.debSha256 ? { hashes: [{ alg: "SHA-256" as const, content: p.debSha256 }] } : {}),
      ...(p.license !== "NOASSERTION" ? { licenses: [{ expression: p.license }] } : {}),
      properties: [
        ...(p.source ? [{ name: "kiln:deb:source", value: p.source }] : []),
        ...(e.inRoot ? [{ name: "kiln:layer", value: "root" }] : []),
        ...e.flavors.map((f) => ({ name: "kiln:layer", value: `flavor:${f}` })),
      ],
    });
  }

  const deps = new Map<string, Set<string>>();
  const dep = (from: string, to: string) => deps.set(from, (deps.get(from) ?? new Set()).add(to));
  deps.set(IMAGE_REF, new Set());
  for (const e of all) if (e.inRoot) dep(IMAGE_REF, e.purl);
  for (const f of inv.flavors) {
    dep(IMAGE_REF, flavorRef(f.flavor));
    deps.set(flavorRef(f.flavor), new Set(f.packages.map(purl)));
  }
  for (const p of inv.root) for (const d of resolveDepends(p, inv.root)) dep(purl(p), purl(d));
  for (const f of inv.flavors) {
    const installed = flavorInstalled(inv, f);
    for (const p of f.packages) for (const d of resolveDepends(p, installed)) dep(purl(p), purl(d));
  }
  for (const e of all) if (!deps.has(e.purl)) deps.set(e.purl, new Set());

  return {
    $schema: "http://cyclonedx.org/schema/bom-1.6.schema.json",
    bomFormat: "CycloneDX",
    specVersion: "1.6",
    serialNumber: `urn:uuid:${inventoryIdentity(inv, "cyclonedx")}`,
    version: 1,
    metadata: {
      timestamp: isoSeconds(inv.created),
      tools: { components: [{ type: "application", name: "kiln", version: inv.kilnVersion }] },
      component: {
        type: "operating-system",
        "bom-ref": IMAGE_REF,
        name: inv.name,
        description: `Built by Kiln ${inv.kilnVersion} ${inv.madeFrom ?? `from a recipe with sha256 ${inv.recipeSha256}`}`,
      },
    },
    components,
    dependencies: [...deps].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([ref, on]) => ({ ref, dependsOn: [...on].sort() })),
  };
}
