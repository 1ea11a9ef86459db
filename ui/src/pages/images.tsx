/**
 * Images: the whole list in one GET (IMS has no paging; the service gzips it), filtered and sorted
 * here, shown a page at a time (components/table.tsx).
 */
import { useMemo, useState } from "preact/hooks";
import { api } from "../api.js";
import { Table, type Column } from "../components/table.js";
import { ErrorBox } from "../components/status.js";
import { when } from "../format.js";
import { useLoad } from "../hooks.js";
import { ARCHES, type ImageRecord } from "../records.js";
import { href } from "../router.js";

const columns: Column<ImageRecord>[] = [
  { label: "Name", sort: (i) => i.name.toLowerCase(), render: (i) => <a href={href("images", i.id)}>{i.name}</a> },
  { label: "Arch", sort: (i) => i.arch, render: (i) => i.arch },
  { label: "Created", sort: (i) => i.created, render: (i) => when(i.created) },
  { label: "Flavors", sort: (i) => (i.kiln?.flavors ?? []).map((f) => f.flavor).join(","), render: (i) => (i.kiln?.flavors ?? []).map((f) => f.flavor).join(", ") || "—" },
  { label: "Label", sort: (i) => i.kiln?.label ?? "", render: (i) => i.kiln?.label ?? "—" },
  { label: "Artifacts", sort: (i) => (i.link ? 1 : 0), render: (i) => (i.link ? "linked" : "none yet") },
  { label: "Id", render: (i) => <code>{i.id}</code> },
];

export function ImagesPage() {
  const { data, error } = useLoad(() => api<ImageRecord[]>("GET", "/v3/images"), []);
  const [name, setName] = useState("");
  const [arch, setArch] = useState("");
  const rows = useMemo(() => {
    const q = name.trim().toLowerCase();
    return (data ?? []).filter((i) => (!q || i.name.toLowerCase().includes(q) || i.id.startsWith(q)) && (!arch || i.arch === arch));
  }, [data, name, arch]);
  return (
    <section>
      <h1>Images</h1>
      <div class="filters">
        <label>
          Name or id <input type="search" value={name} onInput={(e) => setName(e.currentTarget.value)} />
        </label>
        <label>
          Arch{" "}
          <select value={arch} onChange={(e) => setArch(e.currentTarget.value)}>
            <option value="">any</option>
            {ARCHES.map((a) => (
              <option value={a}>{a}</option>
            ))}
          </select>
        </label>
      </div>
      <ErrorBox error={error} />
      {data ? <Table caption="Images" rows={rows} columns={columns} rowKey={(i) => i.id} initialSort={{ column: 2, descending: true }} /> : error ? null : <p>Loading…</p>}
    </section>
  );
}
