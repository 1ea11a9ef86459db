/** The service: version, catalog and store in use, workers and what they run, jobs waiting and running. */
import { api } from "../api.js";
import { Table, type Column } from "../components/table.js";
import { ErrorBox } from "../components/status.js";
import { when } from "../format.js";
import { useLoad } from "../hooks.js";
import { FINAL_STATUSES, type JobRecord, type ServiceInfo, type Worker } from "../records.js";

const workerColumns: Column<Worker>[] = [
  { label: "Name", sort: (w) => w.name, render: (w) => w.name },
  { label: "Host", sort: (w) => w.host, render: (w) => `${w.host} (pid ${w.pid})` },
  { label: "Alive", sort: (w) => (w.alive ? 1 : 0), render: (w) => (w.alive ? "yes" : w.stopped ? `stopped ${when(w.stopped)}` : "silent") },
  { label: "Running", sort: (w) => w.running, render: (w) => `${w.running} of ${w.concurrency}` },
  { label: "Version", sort: (w) => w.version, render: (w) => w.version },
  { label: "Last seen", sort: (w) => w.last_seen, render: (w) => when(w.last_seen) },
];

export function ServicePage() {
  const s = useLoad(
    async () => ({
      info: await api<ServiceInfo>("GET", "/v3/service"),
      workers: await api<Worker[]>("GET", "/v3/workers"),
      jobs: await api<JobRecord[]>("GET", "/v3/jobs"),
    }),
    [],
    5000,
  );
  const d = s.data;
  const open = (d?.jobs ?? []).filter((j) => !FINAL_STATUSES.includes(j.status));
  const waiting = open.filter((j) => j.status === "creating" && !j.kiln?.worker).length;
  return (
    <section>
      <h1>Service</h1>
      <ErrorBox error={s.error} />
      {d ? (
        <>
          <dl class="facts">
            <dt>Version</dt>
            <dd>{d.info.version}</dd>
            <dt>Catalog</dt>
            <dd>
              {d.info.catalog.kind === "pglite" ? "PGlite (embedded)" : "PostgreSQL"} <code>{d.info.catalog.location}</code>
            </dd>
            <dt>Object store</dt>
            <dd>
              {d.info.store.kind === "s3" ? "S3" : "directory"} <code>{d.info.store.location}</code>
            </dd>
            <dt>Jobs waiting for a worker</dt>
            <dd>{waiting}</dd>
            <dt>Jobs running or in a session</dt>
            <dd>{open.length - waiting}</dd>
          </dl>
          <h2>Workers</h2>
          <Table caption="Workers" rows={d.workers} columns={workerColumns} rowKey={(w) => `${w.name}-${w.started}`} initialSort={{ column: 2, descending: true }} />
        </>
      ) : null}
    </section>
  );
}
