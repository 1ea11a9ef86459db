/**
 * repositories: extra apt sources (a PPA, -proposed, backports), each with an optional signing
 * key and pin priority. Only files: the packages stage does the downloading.
 */
import { copyFile, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { z } from "zod";
import { KilnError } from "../errors.js";
import { mkdirInRoot } from "../host/root-path.js";
import { defineLayerStage } from "./stage.js";

const RepositoryOptions = z.strictObject({
  name: z.string(),
  uri: z.string(),
  suite: z.string(),
  components: z.array(z.string()),
  pin: z.number().int().optional(),
  keyFile: z.string().optional(),
});
export type RepositoryOptions = z.output<typeof RepositoryOptions>;

export const repositories = defineLayerStage({
  kind: "repositories",
  summary: "Add extra apt repositories, keys and pins",
  options: z.strictObject({ repositories: z.array(RepositoryOptions) }),
  plan({ recipe: r, file, archive, digestOf, ref }) {
    if (r.repositories.length === 0) return [];
    const inputs: Record<string, string> = {};
    const repos = r.repositories.map((repo, i) => {
      if (repo.key) inputs[`repositories[${i}].key`] = digestOf(repo.key);
      const uri = repo.uri ?? archive;
      if (!uri) {
        throw new KilnError("RECIPE_INVALID", `${file}: repositories[${i}].uri: required here, because this host has no Debian apt source to default to; give the archive's URL`);
      }
      return { name: repo.name, uri, suite: repo.suite, components: repo.components, pin: repo.pin, keyFile: repo.key ? ref(`repositories[${i}].key`, repo.key) : undefined };
    });
    return [{ options: { repositories: repos }, inputs }];
  },
  base: false,
  tools: [],
  async run(ctx, o) {
    const lists = await mkdirInRoot(ctx.root, "/etc/apt/sources.list.d");
    const keyrings = await mkdirInRoot(ctx.root, "/etc/apt/keyrings");
    const prefs = await mkdirInRoot(ctx.root, "/etc/apt/preferences.d");
    for (const r of o.repositories) {
      let options = "";
      if (r.keyFile) {
        const armored = (await readFile(r.keyFile)).subarray(0, 64).toString("latin1").includes("-----BEGIN PGP");
        const keyName = `kiln-${r.name}.${armored ? "asc" : "gpg"}`;
        await copyFile(r.keyFile, path.join(keyrings, keyName));
        options = ` [signed-by=/etc/apt/keyrings/${keyName}]`;
      }
      await writeFile(path.join(lists, `kiln-${r.name}.list`), `deb${options} ${r.uri} ${r.suite} ${r.components.join(" ")}\n`);
      ctx.log.line(`repository ${r.name}: ${r.uri} ${r.suite}${r.pin === undefined ? "" : ` pin ${r.pin}`}`);
      if (r.pin !== undefined) {
        // n= matches the Release file's Codename, which is the suite name for Debian's
        // bookworm-backports / -proposed-updates style suites (apt_preferences(5)).
        await writeFile(
          path.join(prefs, `kiln-${r.name}.pref`),
          `Package: *\nPin: release n=${r.suite}\nPin-Priority: ${r.pin}\n`,
        );
      }
    }
  },
});
