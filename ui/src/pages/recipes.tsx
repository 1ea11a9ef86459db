/** Recipes: the list, filtered by name. */
import { useMemo, useState } from "preact/hooks";
import { api } from "../api.js";
import { useCanWrite } from "../context.js";
import { Table, type Column } from "../components/table.js";
import { ErrorBox } from "../components/status.js";
import { when } from "../format.js";
import { useLoad } from "../hooks.js";
import type { RecipeRecord } from "../records.js";
import { href } from "../router.js";

const columns: Column<RecipeRecord>[] = [
  { label: "Name", sort: (r) => r.name.toLowerCase(), render: (r) => <a href={href("recipes", r.id)}>{r.name}</a> },
  { label: "Type", sort: (r) => r.recipe_type, render: (r) => r.recipe_type },
  { label: "Distribution", sort: (r) => r.linux_distribution, render: (r) => r.linux_distribution },
  { label: "Arch", sort: (r) => r.arch, render: (r) => r.arch },
  { label: "Created", sort: (r) => r.created, render: (r) => when(r.created) },
  { label: "Archive", sort: (r) => (r.link ? 1 : 0), render: (r) => (r.link ? "uploaded" : "none") },
];

export function RecipesPage() {
  const canWrite = useCanWrite();
  const { data, error } = useLoad(() => api<RecipeRecord[]>("GET", "/v3/recipes"), []);
  const [name, setName] = useState("");
  const rows = useMemo(() => (data ?? []).filter((r) => r.name.toLowerCase().includes(name.trim().toLowerCase())), [data, name]);
  return (
    <section>
      <h1>Recipes</h1>
      {canWrite ? (
        <p>
          <a class="button" href={href("recipes", "new")}>
            Upload a recipe
          </a>
        </p>
      ) : null}
      <div class="filters">
        <label>
          Name <input type="search" value={name} onInput={(e) => setName(e.currentTarget.value)} />
        </label>
      </div>
      <ErrorBox error={error} />
      {data ? <Table caption="Recipes" rows={rows} columns={columns} rowKey={(r) => r.id} initialSort={{ column: 4, descending: true }} /> : error ? null : <p>Loading…</p>}
    </section>
  );
}
