/** Public keys: list, add, delete. */
import { useState } from "preact/hooks";
import { api } from "../api.js";
import { useCanWrite } from "../context.js";
import { FieldError, OtherErrors } from "../components/fields.js";
import { Table, type Column } from "../components/table.js";
import { ErrorBox } from "../components/status.js";
import { when } from "../format.js";
import { useLoad } from "../hooks.js";
import type { PublicKeyRecord } from "../records.js";

export function KeysPage() {
  const canWrite = useCanWrite();
  const keys = useLoad(() => api<PublicKeyRecord[]>("GET", "/v3/public-keys"), []);
  const [name, setName] = useState("");
  const [key, setKey] = useState("");
  const [error, setError] = useState<Error | undefined>(undefined);
  const call = async (f: () => Promise<unknown>) => {
    try {
      await f();
      setError(undefined);
      keys.reload();
      return true;
    } catch (e) {
      setError(e as Error);
      return false;
    }
  };
  const columns: Column<PublicKeyRecord>[] = [
    { label: "Name", sort: (k) => k.name, render: (k) => k.name },
    { label: "Key", render: (k) => <code class="key">{k.public_key}</code> },
    { label: "Created", sort: (k) => k.created, render: (k) => when(k.created) },
    { label: "Id", render: (k) => <code>{k.id}</code> },
    ...(canWrite
      ? [
          {
            label: "Actions",
            render: (k: PublicKeyRecord) => (
              <button type="button" aria-label={`Delete key ${k.name}`} onClick={() => void call(() => api("DELETE", `/v3/public-keys/${k.id}`))}>
                Delete
              </button>
            ),
          },
        ]
      : []),
  ];
  return (
    <section>
      <h1>Public keys</h1>
      <ErrorBox error={keys.error} />
      {keys.data ? <Table caption="Public keys" rows={keys.data} columns={columns} rowKey={(k) => k.id} /> : null}
      {canWrite ? (
        <form
          class="form"
          onSubmit={(e) => {
            e.preventDefault();
            void call(() => api("POST", "/v3/public-keys", { name, public_key: key })).then((ok) => ok && (setName(""), setKey("")));
          }}
        >
          <h2>Add a key</h2>
          <label for="key-name">Name</label>
          <input id="key-name" required value={name} onInput={(e) => setName(e.currentTarget.value)} />
          <FieldError error={error} field="name" id="key-name-error" />
          <label for="key-text">Public key (a line of authorized_keys)</label>
          <textarea id="key-text" required rows={3} value={key} onInput={(e) => setKey(e.currentTarget.value)} />
          <FieldError error={error} field="public_key" id="key-text-error" />
          <button type="submit">Add key</button>
          <OtherErrors error={error} fields={["name", "public_key"]} />
        </form>
      ) : null}
    </section>
  );
}
