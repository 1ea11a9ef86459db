/**
 * The SBOMs against the official JSON schemas vendored in schema/vendor (see its README for their
 * sources), with ajv set up as CycloneDX's own library sets it up, and against CycloneDX's library.
 */
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { Ajv } from "ajv";
import addFormats from "ajv-formats";
import * as CDX from "@cyclonedx/cyclonedx-library";
import { REPO } from "./kiln.js";

// ajv-formats-draft2019 ships no types: its one function, as CycloneDX's library calls it.
const addDraft2019Formats = createRequire(import.meta.url)("ajv-formats-draft2019") as (ajv: Ajv, o: { formats: string[] }) => Ajv;
const vendored = (name: string) => JSON.parse(readFileSync(path.join(REPO, "schema/vendor", name), "utf8")) as Record<string, unknown>;

function compile(main: string, refs: Record<string, string> = {}) {
  const schemas = Object.fromEntries(Object.entries(refs).map(([uri, file]) => [uri, vendored(file)]));
  const ajv = new Ajv({ strict: false, strictSchema: false, addUsedSchema: false, useDefaults: false, schemas });
  addFormats.default(ajv);
  addDraft2019Formats(ajv, { formats: ["idn-email"] });
  ajv.addFormat("iri-reference", true);
  return ajv.compile(vendored(main));
}

const spdx = compile("spdx-2.3.schema.json");
const cdx = compile("bom-1.6.SNAPSHOT.schema.json", {
  "http://cyclonedx.org/schema/spdx.SNAPSHOT.schema.json": "spdx.SNAPSHOT.schema.json",
  "http://cyclonedx.org/schema/jsf-0.82.SNAPSHOT.schema.json": "jsf-0.82.SNAPSHOT.schema.json",
});

/** Errors of an SPDX 2.3 document against the vendored schema; [] when valid. */
export function spdxSchemaErrors(doc: unknown): unknown[] {
  return spdx(doc) ? [] : [...(spdx.errors ?? [])];
}

/** Errors of a CycloneDX 1.6 BOM against the vendored schema; [] when valid. */
export function cycloneDxSchemaErrors(bom: unknown): unknown[] {
  return cdx(bom) ? [] : [...(cdx.errors ?? [])];
}

/** CycloneDX's own library's strict 1.6 JSON validation: null when valid, else its errors. */
export async function cycloneDxLibraryErrors(text: string): Promise<unknown> {
  return new CDX.Validation.JsonStrictValidator(CDX.Spec.Version.v1dot6).validate(text);
}
