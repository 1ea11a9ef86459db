/** Every stage Kiln has, listed once: the engine dispatches on kind, `kiln stages` prints them. */
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
import type { ArtifactStage, LayerStage } from "./stage.js";
import { tarball } from "./tarball.js";

// Options are typed per stage; the registry only dispatches on kind.
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- heterogenous registry, see above
export const LAYER_STAGES: Record<string, LayerStage<any>> = Object.fromEntries(
  [bootstrap, importImage, repositories, packages, files, caCertificates, scripts, config, ansible, siteCa, seal, kernel].map((s) => [s.kind, s]),
);

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- as above
export const ARTIFACT_STAGES: Record<string, ArtifactStage<any>> = Object.fromEntries(
  [squashfs, squashfsCopy, manifest, tarball, qcow2, iso].map((s) => [s.kind, s]),
);
