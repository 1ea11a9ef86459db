/**
 * One job: its record, the status history (seconds per status), the stage timeline, the log as
 * it is written (GET /v3/jobs/{id}/log keeps the response open while the job runs), and for
 * customize and debug sessions the SSH command with End session and Cancel.
 */
import { useEffect, useRef, useState } from "preact/hooks";
import { api, apiStream } from "../api.js";
import { useCanWrite } from "../context.js";
import { CopyButton, ErrorBox, Status } from "../components/status.js";
import { StageTimeline } from "../components/timeline.js";
import { seconds, when } from "../format.js";
import { useLoad } from "../hooks.js";
import { FINAL_STATUSES, type JobRecord } from "../records.js";
import { href } from "../router.js";
import { JOB_POLL_MS } from "./jobs.js";

export function JobPage(props: { id: string }) {
  const canWrite = useCanWrite();
  const job = useLoad(() => api<JobRecord>("GET", `/v3/jobs/${props.id}`), [props.id], JOB_POLL_MS);
  const [error, setError] = useState<Error | undefined>(undefined);
  const j = job.data;
  if (!j) return job.error ? <ErrorBox error={job.error} /> : <p>Loading…</p>;
  const ended = FINAL_STATUSES.includes(j.status);
  const act = async (path: string, body?: unknown) => {
    try {
      await api("POST", `/v3/jobs/${j.id}/${path}`, body);
      setError(undefined);
      job.reload();
    } catch (e) {
      setError(e as Error);
    }
  };
  const access = j.ssh_containers?.[0]?.connection_info?.customer_access;
  const ssh = access ? `ssh -p ${access.port} root@${access.host}` : undefined;
  return (
    <section>
      <h1>
        Job {j.image_root_archive_name} <Status status={j.status} />
      </h1>
      <dl class="facts">
        <dt>Id</dt>
        <dd>
          <code>{j.id}</code>
        </dd>
        <dt>Type</dt>
        <dd>{j.job_type}</dd>
        <dt>From</dt>
        <dd>{j.job_type === "create" ? <a href={href("recipes", j.artifact_id)}>recipe {j.artifact_id}</a> : <a href={href("images", j.artifact_id)}>image {j.artifact_id}</a>}</dd>
        <dt>Created</dt>
        <dd>{when(j.created)}</dd>
        <dt>Worker</dt>
        <dd>{j.kiln?.worker ?? "—"}</dd>
        <dt>Result</dt>
        <dd>{j.resultant_image_id ? <a href={href("images", j.resultant_image_id)}>image {j.resultant_image_id}</a> : "—"}</dd>
        {j.kiln?.error ? (
          <>
            <dt>Error</dt>
            <dd class="error">{j.kiln.error}</dd>
          </>
        ) : null}
      </dl>
      {j.status === "waiting_on_user" && ssh ? (
        <div class="session">
          <h2>SSH session{j.kiln?.debug_stage ? ` (debug shell on ${j.kiln.debug_stage})` : ""}</h2>
          <p>
            <code>{ssh}</code> <CopyButton text={ssh} label="Copy SSH command" />
          </p>
          {j.kiln?.ssh_host_key ? <p class="hint">Host key: {j.kiln.ssh_host_key}</p> : null}
          {canWrite ? (
            <p>
              <button type="button" onClick={() => void act("end-session", { marker: "complete" })}>
                End session: complete
              </button>{" "}
              <button type="button" onClick={() => void act("end-session", { marker: "failed" })}>
                End session: failed
              </button>
            </p>
          ) : null}
        </div>
      ) : null}
      {canWrite && !ended ? (
        <p>
          <button type="button" class="danger" onClick={() => void act("cancel")}>
            Cancel job
          </button>
        </p>
      ) : null}
      <ErrorBox error={error} />
      <h2>Status history</h2>
      <table>
        <caption class="visually-hidden">Seconds in each status</caption>
        <thead>
          <tr>
            <th scope="col">Status</th>
            <th scope="col">Time in it</th>
          </tr>
        </thead>
        <tbody>
          {Object.entries(j.kiln?.status_seconds ?? {}).map(([s, t]) => (
            <tr key={s}>
              <td>{s}</td>
              <td>{seconds(t)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {j.kiln?.status_since ? <p class="hint">{j.status} since {when(j.kiln.status_since)}</p> : null}
      <h2>Stages</h2>
      <StageTimeline stages={j.kiln?.stages ?? []} />
      <h2>Log</h2>
      <JobLog id={j.id} />
    </section>
  );
}

/**
 * The log, streamed. Text goes straight into the DOM (no re-render per chunk), batched per
 * animation frame, each batch a block of its own: appending to one text node would lay out the
 * whole log again on every batch, and blocks off screen skip rendering (content-visibility in
 * style.css), so 100,000 lines stay smooth (bench/ui). It follows the end while the reader is at
 * the bottom.
 */
const BLOCK_LINES = 500;
const FRAME_LINES = 5000;

/** The index just past the `n`th newline from `from` (or the end of the text). */
function nthNewline(text: string, from: number, n: number): number {
  let at = from;
  for (let i = 0; i < n; i++) {
    const nl = text.indexOf("\n", at);
    if (nl < 0) return text.length;
    at = nl + 1;
  }
  return at;
}

function JobLog(props: { id: string }) {
  const pre = useRef<HTMLDivElement>(null);
  const [state, setState] = useState<"streaming" | "ended" | Error>("streaming");
  useEffect(() => {
    const abort = new AbortController();
    let pending = "";
    let frame = 0;
    let streamEnded = false;
    // "End of log." once the stream has ended and every line is on the page.
    const finish = () => streamEnded && !pending && setState("ended");
    // The service may send megabytes at once (a finished job's whole log): each frame appends at
    // most FRAME_LINES lines, in blocks of BLOCK_LINES, and leaves the rest for the next frame.
    const flush = () => {
      frame = 0;
      const el = pre.current;
      if (!el || !pending) return finish();
      const atEnd = el.scrollHeight - el.scrollTop - el.clientHeight < 40;
      let at = 0;
      for (let lines = 0; lines < FRAME_LINES && at < pending.length; lines += BLOCK_LINES) {
        const end = nthNewline(pending, at, BLOCK_LINES);
        const block = document.createElement("div");
        block.className = "chunk";
        block.textContent = pending.slice(at, end);
        el.append(block);
        at = end;
      }
      pending = pending.slice(at);
      if (atEnd) el.scrollTop = el.scrollHeight;
      if (pending) frame = requestAnimationFrame(flush);
      else finish();
    };
    if (pre.current) pre.current.textContent = "";
    apiStream(
      `/v3/jobs/${props.id}/log`,
      (text) => {
        pending += text;
        frame ||= requestAnimationFrame(flush);
      },
      abort.signal,
    ).then(
      () => {
        streamEnded = true;
        if (!frame) finish();
      },
      (e: unknown) => !abort.signal.aborted && setState(e as Error),
    );
    return () => {
      abort.abort();
      cancelAnimationFrame(frame);
    };
  }, [props.id]);
  return (
    <>
      <p class="hint" aria-live="polite">
        {state === "streaming" ? "Streaming while the job runs…" : state === "ended" ? "End of log." : `Log stopped: ${state.message}`}
      </p>
      {/* A labelled region: keyboard users can focus it to scroll; no live role, which would read out every line. */}
      <div class="log" ref={pre} tabIndex={0} role="region" aria-label="Job log" />
    </>
  );
}
