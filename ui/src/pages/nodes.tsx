/**
 * Remote build nodes: IMS' registry of nodes by xname, with the status the service computes when
 * asked (GET /v3/remote-build-nodes/status: whether SSH answers on the node; Kiln runs no jobs on
 * them, its workers take jobs from the queue, and each status says so). Register and delete for
 * admin tokens.
 */
import { useState } from "preact/hooks";
import { api } from "../api.js";
import { useCanWrite } from "../context.js";
import { FieldError, OtherErrors } from "../components/fields.js";
import { Table, type Column } from "../components/table.js";
import { ErrorBox } from "../components/status.js";
import { useLoad } from "../hooks.js";
import type { RemoteBuildNodeStatus } from "../records.js";

export function NodesPage() {
  const canWrite = useCanWrite();
  // The status probes each node (SSH banner, 2 s at most), so it is asked once per visit, not polled.
  const nodes = useLoad(() => api<RemoteBuildNodeStatus[]>("GET", "/v3/remote-build-nodes/status"), []);
  const [xname, setXname] = useState("");
  const [error, setError] = useState<Error | undefined>(undefined);
  const call = async (f: () => Promise<unknown>) => {
    try {
      await f();
      setError(undefined);
      nodes.reload();
      return true;
    } catch (e) {
      setError(e as Error);
      return false;
    }
  };
  const columns: Column<RemoteBuildNodeStatus>[] = [
    { label: "Xname", sort: (n) => n.xname, render: (n) => <code>{n.xname}</code> },
    { label: "SSH", sort: (n) => n.sshStatus, render: (n) => n.sshStatus },
    { label: "Arch", sort: (n) => n.nodeArch, render: (n) => n.nodeArch },
    { label: "Podman", render: (n) => n.podmanStatus },
    { label: "Jobs", render: (n) => (n.numCurrentJobs < 0 ? "unknown" : String(n.numCurrentJobs)) },
    { label: "Runs jobs", sort: (n) => (n.ableToRunJobs ? 1 : 0), render: (n) => (n.ableToRunJobs ? "yes" : <span title={n.kiln.reason}>no</span>) },
    ...(canWrite
      ? [
          {
            label: "Actions",
            render: (n: RemoteBuildNodeStatus) => (
              <button type="button" aria-label={`Delete node ${n.xname}`} onClick={() => void call(() => api("DELETE", `/v3/remote-build-nodes/${encodeURIComponent(n.xname)}`))}>
                Delete
              </button>
            ),
          },
        ]
      : []),
  ];
  const reason = nodes.data?.find((n) => !n.ableToRunJobs)?.kiln.reason;
  return (
    <section>
      <h1>Remote build nodes</h1>
      <ErrorBox error={nodes.error} />
      {reason ? <p class="hint">{reason}</p> : null}
      {nodes.data ? <Table caption="Remote build nodes" rows={nodes.data} columns={columns} rowKey={(n) => n.xname} /> : nodes.error ? null : <p>Checking the nodes…</p>}
      {canWrite ? (
        <form
          class="form"
          onSubmit={(e) => {
            e.preventDefault();
            void call(() => api("POST", "/v3/remote-build-nodes", { xname })).then((ok) => ok && setXname(""));
          }}
        >
          <h2>Register a node</h2>
          <label for="xname">Xname (its host name or address)</label>
          <input id="xname" required value={xname} onInput={(e) => setXname(e.currentTarget.value)} aria-describedby="xname-error" />
          <FieldError error={error} field="xname" id="xname-error" />
          <button type="submit">Register node</button>
          <OtherErrors error={error} fields={["xname"]} />
        </form>
      ) : null}
    </section>
  );
}
