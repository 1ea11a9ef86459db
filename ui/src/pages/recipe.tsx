/** One recipe: its record and template dictionary, its recipe.yaml highlighted and the files its archive carries, a build button, delete. */
import { useState } from "preact/hooks";
import { api, apiText } from "../api.js";
import { YamlView } from "../components/yaml.js";
import { useCanWrite } from "../context.js";
import { ErrorBox } from "../components/status.js";
import { bytes, when } from "../format.js";
import { useLoad } from "../hooks.js";
import type { RecipeRecord } from "../records.js";
import { go } from "../router.js";

export function RecipePage(props: { id: string }) {
  const canWrite = useCanWrite();
  const recipe = useLoad(() => api<RecipeRecord>("GET", `/v3/recipes/${props.id}`), [props.id]);
  const [error, setError] = useState<Error | undefined>(undefined);
  const linked = recipe.data?.link?.path;
  const files = useLoad(async () => (linked ? api<{ files: RecipeFile[] }>("GET", `/v3/recipes/${props.id}/files`) : undefined), [props.id, linked]);
  const hasYaml = files.data?.files.some((f) => f.path === "recipe.yaml" && f.type === "file") ?? false;
  const yaml = useLoad(async () => (hasYaml ? apiText(`/v3/recipes/${props.id}/files/recipe.yaml`) : undefined), [props.id, hasYaml]);
  const r = recipe.data;
  if (!r) return recipe.error ? <ErrorBox error={recipe.error} /> : <p>Loading…</p>;
  const del = async () => {
    if (!confirm(`Delete recipe ${r.name}? It moves to Deleted.`)) return;
    try {
      await api("DELETE", `/v3/recipes/${r.id}`);
      go("deleted");
    } catch (e) {
      setError(e as Error);
    }
  };
  return (
    <section>
      <h1>Recipe {r.name}</h1>
      <dl class="facts">
        <dt>Id</dt>
        <dd>
          <code>{r.id}</code>
        </dd>
        <dt>Type</dt>
        <dd>{r.recipe_type}</dd>
        <dt>Distribution</dt>
        <dd>{r.linux_distribution}</dd>
        <dt>Arch</dt>
        <dd>{r.arch}</dd>
        <dt>Created</dt>
        <dd>{when(r.created)}</dd>
        <dt>Archive</dt>
        <dd>{r.link ? <code>{r.link.path}</code> : "not uploaded"}</dd>
        <dt>Requires DKMS</dt>
        <dd>{r.require_dkms ? "yes" : "no"}</dd>
      </dl>
      <h2>Template dictionary</h2>
      {r.template_dictionary.length === 0 ? (
        <p>Empty.</p>
      ) : (
        <dl class="facts">
          {r.template_dictionary.map((t) => (
            <>
              <dt>{t.key}</dt>
              <dd>{t.value}</dd>
            </>
          ))}
        </dl>
      )}
      {canWrite ? (
        <p>
          {r.link ? (
            <a class="button" href={`#/jobs/new?type=create&from=${encodeURIComponent(r.id)}`}>
              Build it
            </a>
          ) : null}{" "}
          <button type="button" class="danger" onClick={() => void del()}>
            Delete recipe
          </button>
        </p>
      ) : null}
      <ErrorBox error={error} />
      {yaml.data !== undefined ? (
        <>
          <h2>recipe.yaml</h2>
          <YamlView text={yaml.data} label="recipe.yaml" />
        </>
      ) : null}
      <ErrorBox error={files.error ?? yaml.error} />
      {files.data ? <Files files={files.data.files} /> : null}
    </section>
  );
}

interface RecipeFile {
  path: string;
  type: "file" | "dir" | "symlink";
  size: number;
  target?: string;
}

function Files(props: { files: RecipeFile[] }) {
  return (
    <>
      <h2>Files in the archive ({props.files.filter((f) => f.type !== "dir").length})</h2>
      <table class="files">
        <caption class="visually-hidden">Files in the recipe archive</caption>
        <thead>
          <tr>
            <th scope="col">Path</th>
            <th scope="col">Type</th>
            <th scope="col">Size</th>
          </tr>
        </thead>
        <tbody>
          {props.files.map((f) => (
            <tr key={f.path}>
              <td>
                <code>{f.type === "dir" ? `${f.path}/` : f.path}</code>
                {f.target !== undefined ? <> → <code>{f.target}</code></> : null}
              </td>
              <td>{f.type}</td>
              <td>{f.type === "file" ? bytes(f.size) : "—"}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </>
  );
}
