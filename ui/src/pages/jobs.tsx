/** Jobs: filtered by status and type, polled every 2 s while the tab is visible. */
import { useMemo, useState } from "preact/hooks";
import { api } from "../api.js";
import { useCanWrite } from "../context.js";
import { Table, type Column } from "../components/table.js";
import { ErrorBox, Status } from "../components/status.js";
import { seconds, when } from "../format.js";
import { useLoad } from "../hooks.js";
import { JOB_STATUSES, JOB_TYPES, type JobRecord } from "../records.js";
import { href } from "../router.js";

export const JOB_POLL_MS = 2000;

function duration(j: JobRecord): number | undefined {
  const s = j.kiln?.status_seconds;
  return s ? Object.values(s).reduce((a, b) => a + b, 0) : undefined;
}

const columns: Column<JobRecord>[] = [
  { label: "Image name", sort: (j) => j.image_root_archive_name, render: (j) => <a href={href("jobs", j.id)}>{j.image_root_archive_name}</a> },
  { label: "Type", sort: (j) => j.job_type, render: (j) => j.job_type },
  { label: "Status", sort: (j) => j.status, render: (j) => <Status status={j.status} /> },
  { label: "Created", sort: (j) => j.created, render: (j) => when(j.created) },
  { label: "Time", sort: (j) => duration(j) ?? 0, render: (j) => seconds(duration(j)) },
  { label: "Worker", sort: (j) => j.kiln?.worker ?? "", render: (j) => j.kiln?.worker ?? "—" },
  { label: "Id", render: (j) => <code>{j.id}</code> },
];

export function JobsPage() {
  const canWrite = useCanWrite();
  const { data, error } = useLoad(() => api<JobRecord[]>("GET", "/v3/jobs"), [], JOB_POLL_MS);
  const [status, setStatus] = useState("");
  const [type, setType] = useState("");
  const rows = useMemo(() => (data ?? []).filter((j) => (!status || j.status === status) && (!type || j.job_type === type)), [data, status, type]);
  return (
    <section>
      <h1>Jobs</h1>
      {canWrite ? (
        <p>
          <a class="button" href={href("jobs", "new")}>
            New job
          </a>
        </p>
      ) : null}
      <div class="filters">
        <label>
          Status{" "}
          <select value={status} onChange={(e) => setStatus(e.currentTarget.value)}>
            <option value="">any</option>
            {JOB_STATUSES.map((s) => (
              <option value={s}>{s}</option>
            ))}
          </select>
        </label>
        <label>
          Type{" "}
          <select value={type} onChange={(e) => setType(e.currentTarget.value)}>
            <option value="">any</option>
            {JOB_TYPES.map((t) => (
              <option value={t}>{t}</option>
            ))}
          </select>
        </label>
      </div>
      <ErrorBox error={error} />
      {data ? <Table caption="Jobs" rows={rows} columns={columns} rowKey={(j) => j.id} initialSort={{ column: 3, descending: true }} /> : error ? null : <p>Loading…</p>}
    </section>
  );
}
