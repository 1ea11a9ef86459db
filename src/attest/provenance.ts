/**
 * out/provenance.json: an in-toto Statement v1 (https://github.com/in-toto/attestation/blob/main/spec/v1/statement.md)
 * whose predicate is SLSA Provenance v1 (https://slsa.dev/spec/v1.0/provenance). Subjects are the
 * build's artifacts with their sha256; the build definition names the recipe and every file it
 * references by digest (paths relative to the recipe's folder, so the statement does not depend
 * on where the recipe was checked out), the base image for imports, and every stage's cache key.
 * Apart from runDetails.metadata's start and end times it is a function of the build's inputs.
 */
import path from "node:path";
import type { LoadedRecipe } from "../recipe/load.js";
import { referencedFiles } from "../recipe/load.js";
import { isoSeconds } from "./inventory.js";

export const STATEMENT_TYPE = "https://in-toto.io/Statement/v1";
export const PROVENANCE_TYPE = "https://slsa.dev/provenance/v1";
/** What a Kiln recipe build is; the URN's meaning is docs/attest.md#provenance. */
export const BUILD_TYPE = "urn:kiln:build-type:recipe:v1";
/** What a customize job is: an image changed in an SSH session (docs/attest.md#customized-images). */
export const CUSTOMIZE_BUILD_TYPE = "urn:kiln:build-type:customize:v1";
/** The builder of `kiln build` on the host it runs on. */
export const CLI_BUILDER_ID = "urn:kiln:builder:cli";
/** The builder of the service's jobs (create and customize), on whichever worker ran them. */
export const SERVICE_BUILDER_ID = "urn:kiln:builder:service";

interface ResourceDescriptor {
  name?: string;
  uri?: string;
  digest: { sha256: string };
}

export interface ProvenanceStatement {
  _type: typeof STATEMENT_TYPE;
  subject: Array<{ name: string; digest: { sha256: string } }>;
  predicateType: typeof PROVENANCE_TYPE;
  predicate: {
    buildDefinition: {
      buildType: string;
      /**
       * `recipe`: what was built, or for a customized image the recipe its source was built from
       * (absent when unknown); `sourceImage`: a customize job's; `lock`: the kiln.lock a locked
       * build (`--lock`) installed from (docs/lock.md).
       */
      externalParameters: {
        recipe?: { name: string; file?: string; digest: { sha256: string } };
        sourceImage?: { id: string; name: string };
        lock?: { file: string; digest: { sha256: string } };
      };
      internalParameters: { stages: Array<{ name: string; key: string }> };
      resolvedDependencies: ResourceDescriptor[];
    };
    runDetails: {
      builder: { id: string; version: Record<string, string> };
      metadata: { startedOn: string; finishedOn: string };
    };
  };
}

export interface ProvenanceInput {
  loaded: Pick<LoadedRecipe, "recipe" | "file" | "dir" | "sha256" | "inputs">;
  subjects: ReadonlyArray<{ path: string; sha256: string }>;
  stages: ReadonlyArray<{ name: string; key: string }>;
  kilnVersion: string;
  builderId: string;
  startedOn: Date;
  finishedOn: Date;
  /** The lock of a locked build (its path as given, sha256 of its bytes). */
  lock?: { file: string; sha256: string };
}

const hex = (digest: string) => digest.replace(/^sha256:/, "");

/** A customize job's starting point, which its provenance names (there is no recipe to build). */
export interface SourceImage {
  id: string;
  name: string;
  /** Its rootfs object (s3://…) and that file's sha256, as the job downloaded it. */
  rootfs: { path: string; sha256: string };
  /** The recipe its record names (ImageKiln.recipe), carried to the new image. */
  recipe?: { name: string; sha256: string };
}

export function customizeStatement(i: Omit<ProvenanceInput, "loaded"> & { source: SourceImage }): ProvenanceStatement {
  const { source } = i;
  return statement(i, {
    buildType: CUSTOMIZE_BUILD_TYPE,
    externalParameters: {
      ...(source.recipe ? { recipe: { name: source.recipe.name, digest: { sha256: source.recipe.sha256 } } } : {}),
      sourceImage: { id: source.id, name: source.name },
    },
    resolvedDependencies: [{ name: "source-image", uri: source.rootfs.path, digest: { sha256: source.rootfs.sha256 } }],
  });
}

/** The statement around a build definition: its subjects, the stage keys, the builder and the run's times. */
function statement(
  i: Omit<ProvenanceInput, "loaded">,
  definition: Omit<ProvenanceStatement["predicate"]["buildDefinition"], "internalParameters">,
): ProvenanceStatement {
  return {
    _type: STATEMENT_TYPE,
    subject: i.subjects.map((s) => ({ name: s.path, digest: { sha256: s.sha256 } })),
    predicateType: PROVENANCE_TYPE,
    predicate: {
      buildDefinition: {
        buildType: definition.buildType,
        externalParameters: definition.externalParameters,
        internalParameters: { stages: i.stages.map((s) => ({ name: s.name, key: s.key })) },
        resolvedDependencies: definition.resolvedDependencies,
      },
      runDetails: {
        builder: { id: i.builderId, version: { kiln: i.kilnVersion } },
        metadata: { startedOn: isoSeconds(i.startedOn), finishedOn: isoSeconds(i.finishedOn) },
      },
    },
  };
}

export function provenanceStatement(i: ProvenanceInput): ProvenanceStatement {
  const rel = (abs: string) => path.relative(i.loaded.dir, abs).split(path.sep).join("/");
  const deps: ResourceDescriptor[] = [{ name: "recipe", uri: `file:${rel(i.loaded.file)}`, digest: { sha256: i.loaded.sha256 } }];
  for (const ref of referencedFiles(i.loaded.recipe)) {
    const digest = i.loaded.inputs[ref.file];
    // base.image is the import's base image: named so, as verifiers look for it.
    if (digest) deps.push({ name: ref.path === "base.image" ? "base-image" : ref.path, uri: `file:${rel(ref.file)}`, digest: { sha256: hex(digest) } });
  }
  // The lock's name only: where it lay on the builder says nothing about it; its digest does.
  const lock = i.lock && { file: path.basename(i.lock.file), digest: { sha256: i.lock.sha256 } };
  if (lock) deps.push({ name: "lock", uri: `file:${lock.file}`, digest: lock.digest });
  return statement(i, {
    buildType: BUILD_TYPE,
    externalParameters: { recipe: { name: i.loaded.recipe.name, file: rel(i.loaded.file), digest: { sha256: i.loaded.sha256 } }, ...(lock ? { lock } : {}) },
    resolvedDependencies: deps,
  });
}
