/**
 * Every stage Kiln has, listed once, in plan order: the planner asks each in turn for its
 * instances (docs/architecture.md#adding-a-stage), the engine dispatches on kind, `kiln stages`
 * prints them. Root stages run in this order, each on the one before; then the flavors, each on
 * the sealed root; then the artifacts.
 */
import { ansible } from "./ansible.js";
import { bootstrap } from "./bootstrap.js";
import { caCertificates } from "./ca-certificates.js";
import { config } from "./config.js";
import { files } from "./files.js";
import { importImage } from "./import.js";
import { iso } from "./iso.js";
import { kernel } from "./kernel.js";
import { manifest } from "./manifest.js";
import { packages } from "./packages.js";
import { qcow2 } from "./qcow2.js";
import { repositories } from "./repositories.js";
import { scripts } from "./scripts.js";
import { seal } from "./seal.js";
import { siteCa } from "./site-ca.js";
import { squashfs, squashfsCopy } from "./squashfs.js";
import type { ArtifactStage, LayerStage, Stage } from "./stage.js";
import { tarball } from "./tarball.js";

export const STAGES: readonly Stage[] = [
  // the root chain
  bootstrap, importImage, repositories, packages, files, caCertificates, scripts, config, ansible, siteCa, seal,
  // a layer per flavor on the sealed root
  kernel,
  // artifacts (squashfs-copy before squashfs: an unchanged squashfs import is copied, not packed)
  squashfsCopy, squashfs, manifest, tarball, qcow2, iso,
];

export const LAYER_STAGES: Readonly<Record<string, LayerStage>> = Object.fromEntries(STAGES.filter((s) => s.section === "layers").map((s) => [s.kind, s]));
export const ARTIFACT_STAGES: Readonly<Record<string, ArtifactStage>> = Object.fromEntries(STAGES.filter((s) => s.section === "artifacts").map((s) => [s.kind, s]));

export function stageOf(kind: string): Stage {
  const s = STAGES.find((x) => x.kind === kind);
  if (!s) throw new Error(`no stage of kind ${kind}`);
  return s;
}
