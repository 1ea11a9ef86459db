/** Deleted images, recipes and public keys: restore them, or delete them for good. */
import { useState } from "preact/hooks";
import { api } from "../api.js";
import { useCanWrite } from "../context.js";
import { Table, type Column } from "../components/table.js";
import { ErrorBox } from "../components/status.js";
import { when } from "../format.js";
import { useLoad } from "../hooks.js";

interface Deleted {
  id: string;
  name: string;
  created: string;
  deleted?: string;
}

const KINDS: Array<[string, string]> = [
  ["images", "Images"],
  ["recipes", "Recipes"],
  ["public-keys", "Public keys"],
];

function DeletedKind(props: { kind: string; title: string }) {
  const canWrite = useCanWrite();
  const list = useLoad(() => api<Deleted[]>("GET", `/v3/deleted/${props.kind}`), [props.kind]);
  const [error, setError] = useState<Error | undefined>(undefined);
  const call = async (f: () => Promise<unknown>) => {
    try {
      await f();
      setError(undefined);
      list.reload();
    } catch (e) {
      setError(e as Error);
    }
  };
  const columns: Column<Deleted>[] = [
    { label: "Name", sort: (d) => d.name, render: (d) => d.name },
    { label: "Created", sort: (d) => d.created, render: (d) => when(d.created) },
    { label: "Deleted", sort: (d) => d.deleted ?? "", render: (d) => when(d.deleted) },
    { label: "Id", render: (d) => <code>{d.id}</code> },
    ...(canWrite
      ? [
          {
            label: "Actions",
            render: (d: Deleted) => (
              <>
                <button type="button" aria-label={`Undelete: ${d.name}`} onClick={() => void call(() => api("PATCH", `/v3/deleted/${props.kind}/${d.id}`, { operation: "undelete" }))}>
                  Undelete
                </button>{" "}
                <button
                  type="button"
                  class="danger"
                  aria-label={`Delete for good: ${d.name}`}
                  onClick={() => confirm(`Delete ${d.name} and its objects for good? This cannot be undone.`) && void call(() => api("DELETE", `/v3/deleted/${props.kind}/${d.id}`))}
                >
                  Delete for good
                </button>
              </>
            ),
          },
        ]
      : []),
  ];
  return (
    <>
      <h2>{props.title}</h2>
      <ErrorBox error={list.error ?? error} />
      {list.data ? <Table caption={`Deleted ${props.title.toLowerCase()}`} rows={list.data} columns={columns} rowKey={(d) => d.id} initialSort={{ column: 2, descending: true }} /> : null}
    </>
  );
}

export function DeletedPage() {
  return (
    <section>
      <h1>Deleted</h1>
      {KINDS.map(([kind, title]) => (
        <DeletedKind kind={kind} title={title} />
      ))}
    </section>
  );
}
