/**
 * A sortable table that renders one page of rows: 10,000 images stay fast because the DOM only
 * ever holds `pageSize` rows, and sorting is one Array.sort over precomputed keys.
 */
import type { ComponentChildren } from "preact";
import { useMemo, useState } from "preact/hooks";

export interface Column<T> {
  label: string;
  /** What the column sorts by; no sorting when absent. */
  sort?: (row: T) => string | number;
  render: (row: T) => ComponentChildren;
}

export function Table<T>(props: { rows: T[]; columns: Column<T>[]; rowKey: (row: T) => string; pageSize?: number; initialSort?: { column: number; descending: boolean }; caption: string }) {
  const { rows, columns, rowKey } = props;
  const pageSize = props.pageSize ?? 50;
  const [sort, setSort] = useState(props.initialSort ?? { column: -1, descending: false });
  const [page, setPage] = useState(0);
  const sorted = useMemo(() => {
    const by = columns[sort.column]?.sort;
    if (!by) return rows;
    const keyed = rows.map((r) => ({ r, k: by(r) }));
    keyed.sort((a, b) => (a.k < b.k ? -1 : a.k > b.k ? 1 : 0) * (sort.descending ? -1 : 1));
    return keyed.map((x) => x.r);
  }, [rows, columns, sort]);
  const pages = Math.max(1, Math.ceil(sorted.length / pageSize));
  const at = Math.min(page, pages - 1);
  const shown = sorted.slice(at * pageSize, (at + 1) * pageSize);
  return (
    <div class="table">
      <table>
        <caption class="visually-hidden">{props.caption}</caption>
        <thead>
          <tr>
            {columns.map((c, i) => (
              <th scope="col" aria-sort={sort.column === i ? (sort.descending ? "descending" : "ascending") : undefined}>
                {c.sort ? (
                  <button type="button" class="sort" onClick={() => setSort({ column: i, descending: sort.column === i ? !sort.descending : false })}>
                    {c.label}
                    <span aria-hidden="true">{sort.column === i ? (sort.descending ? " ▼" : " ▲") : ""}</span>
                  </button>
                ) : (
                  c.label
                )}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {shown.map((r) => (
            <tr key={rowKey(r)}>
              {columns.map((c) => (
                <td>{c.render(r)}</td>
              ))}
            </tr>
          ))}
        </tbody>
      </table>
      {sorted.length === 0 ? <p class="empty">Nothing here.</p> : null}
      <nav class="pager" aria-label={`${props.caption} pages`}>
        <button type="button" disabled={at === 0} onClick={() => setPage(at - 1)}>
          Previous
        </button>
        <span>
          Page {at + 1} of {pages} ({sorted.length} rows)
        </span>
        <button type="button" disabled={at >= pages - 1} onClick={() => setPage(at + 1)}>
          Next
        </button>
      </nav>
    </div>
  );
}
