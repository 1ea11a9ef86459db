/**
 * Images: the whole list in one GET (IMS has no paging; the service gzips it), filtered and sorted
 * here, shown a page at a time (components/table.tsx).
 */
import { useMemo, useState } from "preact/hooks";
import { api } from "../api.js";
import { Table, type Column } from "../components/table.js";
import { ErrorBox } from "../components/status.js";
import { bytes, when } from "../format.js";
import { useLoad } from "../hooks.js";
import { ARCHES, VERIFY_STATUSES, verifyStatus, type ImageRecord } from "../records.js";
import { href } from "../router.js";

const MIB = 1024 * 1024;

const columns: Column<ImageRecord>[] = [
  { label: "Name", sort: (i) => i.name.toLowerCase(), render: (i) => <a href={href("images", i.id)}>{i.name}</a> },
  { label: "Arch", sort: (i) => i.arch, render: (i) => i.arch },
  { label: "Created", sort: (i) => i.created, render: (i) => when(i.created) },
  // Images without a recorded size sort below every sized one.
  { label: "Size", sort: (i) => i.kiln?.size ?? -1, render: (i) => bytes(i.kiln?.size) },
  { label: "Flavors", sort: (i) => (i.kiln?.flavors ?? []).map((f) => f.flavor).join(","), render: (i) => (i.kiln?.flavors ?? []).map((f) => f.flavor).join(", ") || "—" },
  { label: "Verify", sort: (i) => verifyStatus(i), render: (i) => <span class={`verify verify-${verifyStatus(i).replace(" ", "-")}`}>{verifyStatus(i)}</span> },
  { label: "Label", sort: (i) => i.kiln?.label ?? "", render: (i) => i.kiln?.label ?? "—" },
  { label: "Artifacts", sort: (i) => (i.link ? 1 : 0), render: (i) => (i.link ? "linked" : "none yet") },
  { label: "Id", render: (i) => <code>{i.id}</code> },
];

/** A number field's value, or undefined when empty or not a number. */
function num(s: string): number | undefined {
  const n = s.trim() === "" ? NaN : Number(s);
  return Number.isFinite(n) ? n : undefined;
}

export function ImagesPage() {
  const { data, error } = useLoad(() => api<ImageRecord[]>("GET", "/v3/images"), []);
  const [name, setName] = useState("");
  const [arch, setArch] = useState("");
  const [flavor, setFlavor] = useState("");
  const [verify, setVerify] = useState("");
  const [minMiB, setMin] = useState("");
  const [maxMiB, setMax] = useState("");
  const flavors = useMemo(() => [...new Set((data ?? []).flatMap((i) => (i.kiln?.flavors ?? []).map((f) => f.flavor)))].sort(), [data]);
  const rows = useMemo(() => {
    const q = name.trim().toLowerCase();
    const lo = num(minMiB);
    const hi = num(maxMiB);
    return (data ?? []).filter((i) => {
      if (q && !i.name.toLowerCase().includes(q) && !i.id.startsWith(q)) return false;
      if (arch && i.arch !== arch) return false;
      if (flavor && !(i.kiln?.flavors ?? []).some((f) => f.flavor === flavor)) return false;
      if (verify && verifyStatus(i) !== verify) return false;
      // A size bound leaves out images whose size is not known.
      const size = i.kiln?.size;
      if (lo !== undefined && (size === undefined || size < lo * MIB)) return false;
      if (hi !== undefined && (size === undefined || size > hi * MIB)) return false;
      return true;
    });
  }, [data, name, arch, flavor, verify, minMiB, maxMiB]);
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
        <label>
          Flavor{" "}
          <select value={flavor} onChange={(e) => setFlavor(e.currentTarget.value)}>
            <option value="">any</option>
            {flavors.map((f) => (
              <option value={f}>{f}</option>
            ))}
          </select>
        </label>
        <label>
          Verify{" "}
          <select value={verify} onChange={(e) => setVerify(e.currentTarget.value)}>
            <option value="">any</option>
            {VERIFY_STATUSES.map((v) => (
              <option value={v}>{v}</option>
            ))}
          </select>
        </label>
        <label>
          Size from (MiB) <input class="num" type="number" min="0" step="any" value={minMiB} onInput={(e) => setMin(e.currentTarget.value)} />
        </label>
        <label>
          to (MiB) <input class="num" type="number" min="0" step="any" value={maxMiB} onInput={(e) => setMax(e.currentTarget.value)} />
        </label>
      </div>
      <ErrorBox error={error} />
      {data ? <Table caption="Images" rows={rows} columns={columns} rowKey={(i) => i.id} initialSort={{ column: 2, descending: true }} /> : error ? null : <p>Loading…</p>}
    </section>
  );
}
