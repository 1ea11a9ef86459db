/**
 * The package diff of a customize job: what the operator's session added, removed and changed,
 * from `dpkg-query --show` of the source image and of the new one (the squashfs.manifest format:
 * `name<TAB>version`, one package a line).
 */
import type { PackageDiff } from "../catalog/records.js";

export function parsePackageList(text: string): Map<string, string> {
  const packages = new Map<string, string>();
  for (const line of text.split("\n")) {
    const [name, version] = line.split("\t");
    if (name && name.trim() !== "") packages.set(name.trim(), (version ?? "").trim());
  }
  return packages;
}

export function diffPackages(before: Map<string, string>, after: Map<string, string>): PackageDiff {
  const diff: PackageDiff = { added: [], removed: [], changed: [] };
  for (const [name, version] of after) {
    const was = before.get(name);
    if (was === undefined) diff.added.push({ name, version });
    else if (was !== version) diff.changed.push({ name, from: was, to: version });
  }
  for (const [name, version] of before) if (!after.has(name)) diff.removed.push({ name, version });
  const byName = (a: { name: string }, b: { name: string }) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
  diff.added.sort(byName);
  diff.removed.sort(byName);
  diff.changed.sort(byName);
  return diff;
}

/** One line per change, as `kiln ims images describe` prints them: `+ name version`, `- name version`, `~ name from → to`. */
export function formatPackageDiff(diff: PackageDiff): string[] {
  return [
    ...diff.added.map((p) => `+ ${p.name} ${p.version}`),
    ...diff.removed.map((p) => `- ${p.name} ${p.version}`),
    ...diff.changed.map((p) => `~ ${p.name} ${p.from} → ${p.to}`),
  ];
}
