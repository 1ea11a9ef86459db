/**
 * The host's configured Debian apt sources, which are the default mirror for `base: {debian: …}`
 * (so a site's mirror or proxying cache is used without naming a host in any recipe).
 * Reads both formats: one-line `sources.list` entries and deb822 `.sources` files.
 */
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";

export interface AptSource {
  uri: string;
  suites: string[];
  components: string[];
}

export function parseOneLineSources(text: string): AptSource[] {
  const out: AptSource[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.replace(/#.*/, "").trim();
    if (!line.startsWith("deb ")) continue;
    const words = line.slice(4).replace(/\[[^\]]*\]/, "").trim().split(/\s+/);
    const [uri, suite, ...components] = words;
    if (uri && suite) out.push({ uri, suites: [suite], components });
  }
  return out;
}

export function parseDeb822Sources(text: string): AptSource[] {
  const out: AptSource[] = [];
  for (const stanza of text.split(/\n\s*\n/)) {
    const fields = new Map<string, string>();
    for (const line of stanza.split("\n")) {
      if (line.startsWith("#")) continue;
      const m = /^([A-Za-z-]+):\s*(.*)$/.exec(line);
      if (m) fields.set(m[1]!.toLowerCase(), m[2]!.trim());
    }
    if (!(fields.get("types") ?? "").split(/\s+/).includes("deb")) continue;
    if ((fields.get("enabled") ?? "yes").toLowerCase() === "no") continue;
    const suites = (fields.get("suites") ?? "").split(/\s+/).filter(Boolean);
    const components = (fields.get("components") ?? "").split(/\s+/).filter(Boolean);
    for (const uri of (fields.get("uris") ?? "").split(/\s+/).filter(Boolean)) out.push({ uri, suites, components });
  }
  return out;
}

export async function readHostSources(etcApt = "/etc/apt"): Promise<AptSource[]> {
  const sources: AptSource[] = [];
  const read = (p: string) => readFile(p, "utf8").catch(() => "");
  sources.push(...parseOneLineSources(await read(path.join(etcApt, "sources.list"))));
  const dir = path.join(etcApt, "sources.list.d");
  const names = (await readdir(dir).catch(() => [] as string[])).sort();
  for (const n of names) {
    if (n.endsWith(".list")) sources.push(...parseOneLineSources(await read(path.join(dir, n))));
    else if (n.endsWith(".sources")) sources.push(...parseDeb822Sources(await read(path.join(dir, n))));
  }
  return sources;
}

/**
 * The apt lines for a Debian suite, taken from the host: every host source that serves the
 * suite itself or one of its companions (`-updates`, `-security`), so images get security
 * updates exactly as the host does. Returns [] when the host has no source for the suite.
 */
export function debianLinesFor(suite: string, components: string[], sources: AptSource[]): string[] {
  const lines: string[] = [];
  for (const s of sources) {
    for (const su of s.suites) {
      if (su === suite || su === `${suite}-updates` || su === `${suite}-security`) {
        const line = `deb ${s.uri} ${su} ${components.join(" ")}`;
        if (!lines.includes(line)) lines.push(line);
      }
    }
  }
  // The suite itself first: mmdebstrap takes the first line as the primary mirror.
  return lines.sort((a, b) => rank(a, suite) - rank(b, suite));
}

function rank(line: string, suite: string): number {
  const su = line.split(" ")[2];
  return su === suite ? 0 : su === `${suite}-updates` ? 1 : 2;
}

/** The URI of the host's main Debian archive (the one serving `suite`), for extra suites such as backports. */
export function primaryMirror(suite: string, sources: AptSource[]): string | undefined {
  return sources.find((s) => s.suites.includes(suite))?.uri;
}

/** The host's Debian archive (a source whose URI ends in /debian), for suites the host itself does not use. */
export function debianArchiveUri(sources: AptSource[]): string | undefined {
  return sources.find((s) => /\/debian\/?$/.test(s.uri) && !s.suites.some((x) => x.endsWith("-security")))?.uri;
}
