/**
 * One image: its record, its artifacts (size, md5 and sha256 from the service, download through
 * the presigned URL), its attestations (SBOMs, kiln.lock, provenance), its verify boots with their
 * serial logs, boot-params, the package manifest (searchable), the package diff against its
 * source image, metadata editing and delete (undelete is on the Deleted page).
 */
import { useMemo, useState } from "preact/hooks";
import { api, apiHead, apiText } from "../api.js";
import { useCanWrite } from "../context.js";
import { ErrorBox } from "../components/status.js";
import { artifactApiPath, bytes, seconds, when } from "../format.js";
import { useLoad } from "../hooks.js";
import { ARTIFACT_KINDS, SERIAL_LOG_TYPE } from "../../../src/artifacts/types.js";
import type { ImageRecord, ImageVerify, PresignedUrls } from "../records.js";
import { go, href } from "../router.js";

type Artifact = PresignedUrls["artifacts"][number] & { size?: number; sha256?: string };

const BOOT_PARAMS = ARTIFACT_KINDS.bootParams.type;
const PACKAGE_LIST = ARTIFACT_KINDS.manifest.type;
/** What the image says about itself (docs/attest.md, docs/lock.md), linked by name. */
const ATTESTATIONS: Array<{ type: string; label: string }> = [
  { type: ARTIFACT_KINDS.sbomSpdx.type, label: "SBOM (SPDX)" },
  { type: ARTIFACT_KINDS.sbomCycloneDx.type, label: "SBOM (CycloneDX)" },
  { type: ARTIFACT_KINDS.lock.type, label: "kiln.lock" },
  { type: ARTIFACT_KINDS.provenance.type, label: "Provenance (in-toto)" },
];

async function loadArtifacts(image: ImageRecord): Promise<{ urls: PresignedUrls; artifacts: Artifact[]; bootParams: Array<[string, string]>; packages: string | undefined } | undefined> {
  if (!image.link) return undefined;
  const urls = await api<PresignedUrls>("GET", `/v3/images/${image.id}/urls`);
  const artifacts: Artifact[] = await Promise.all(
    urls.artifacts.map(async (a) => {
      const head = await apiHead(artifactApiPath(a.path)).catch(() => ({ size: undefined, sha256: undefined }));
      return { ...a, size: head.size, sha256: head.sha256 };
    }),
  );
  const bootParams: Array<[string, string]> = [];
  for (const a of artifacts.filter((x) => x.type === BOOT_PARAMS)) bootParams.push([a.flavor ?? "", (await apiText(artifactApiPath(a.path))).trim()]);
  const list = artifacts.find((x) => x.type === PACKAGE_LIST);
  return { urls, artifacts, bootParams, packages: list ? await apiText(artifactApiPath(list.path)) : undefined };
}

export function ImagePage(props: { id: string }) {
  const canWrite = useCanWrite();
  const image = useLoad(() => api<ImageRecord>("GET", `/v3/images/${props.id}`), [props.id]);
  const files = useLoad(async () => (image.data ? loadArtifacts(image.data) : undefined), [image.data?.link?.path]);
  const [error, setError] = useState<Error | undefined>(undefined);
  const i = image.data;
  if (!i) return image.error ? <ErrorBox error={image.error} /> : <p>Loading…</p>;
  const del = async () => {
    if (!confirm(`Delete image ${i.name}? It moves to Deleted, where it can be restored.`)) return;
    try {
      await api("DELETE", `/v3/images/${i.id}`);
      go("deleted");
    } catch (e) {
      setError(e as Error);
    }
  };
  return (
    <section>
      <h1>Image {i.name}</h1>
      <dl class="facts">
        <dt>Id</dt>
        <dd>
          <code>{i.id}</code>
        </dd>
        <dt>Arch</dt>
        <dd>{i.arch}</dd>
        <dt>Created</dt>
        <dd>{when(i.created)}</dd>
        <dt>Label</dt>
        <dd>{i.kiln?.label ?? "—"}</dd>
        <dt>Flavors</dt>
        <dd>{(i.kiln?.flavors ?? []).map((f) => `${f.flavor} (${f.kernel_version})`).join(", ") || "—"}</dd>
        <dt>Made by job</dt>
        <dd>{i.kiln?.job_id ? <a href={href("jobs", i.kiln.job_id)}>{i.kiln.job_id}</a> : "—"}</dd>
        <dt>Source image</dt>
        <dd>{i.kiln?.source_image_id ? <a href={href("images", i.kiln.source_image_id)}>{i.kiln.source_image_id}</a> : "—"}</dd>
      </dl>
      {canWrite ? (
        <p>
          <button type="button" class="danger" onClick={() => void del()}>
            Delete image
          </button>
        </p>
      ) : null}
      <ErrorBox error={error} />
      <Metadata image={i} onChange={image.reload} />
      <h2>Artifacts</h2>
      <ErrorBox error={files.error} />
      {!i.link ? <p>No artifacts yet: a job links the image when it ends.</p> : !files.data ? <p>Loading…</p> : <Artifacts artifacts={files.data.artifacts.filter((a) => a.type !== SERIAL_LOG_TYPE)} expires={files.data.urls.expires_at} />}
      {files.data ? <Attestations artifacts={files.data.artifacts} /> : null}
      <Verify boots={i.kiln?.verify} artifacts={files.data?.artifacts ?? []} />
      {files.data?.bootParams.length ? (
        <>
          <h2>Boot parameters</h2>
          {files.data.bootParams.map(([flavor, text]) => (
            <div>
              <h3>{flavor || "default"}</h3>
              <pre class="wrap">{text}</pre>
            </div>
          ))}
        </>
      ) : null}
      {i.kiln?.package_diff ? <PackageDiff diff={i.kiln.package_diff} /> : null}
      {files.data?.packages !== undefined ? <Packages text={files.data.packages} /> : null}
    </section>
  );
}

function Artifacts(props: { artifacts: Artifact[]; expires: string }) {
  return (
    <>
      <table>
        <caption class="visually-hidden">Artifacts</caption>
        <thead>
          <tr>
            <th scope="col">Type</th>
            <th scope="col">Flavor</th>
            <th scope="col">Size</th>
            <th scope="col">md5</th>
            <th scope="col">sha256</th>
            <th scope="col">Download</th>
          </tr>
        </thead>
        <tbody>
          {props.artifacts.map((a) => (
            <tr key={a.path}>
              <td>{a.type}</td>
              <td>{a.flavor ?? "—"}</td>
              <td>{bytes(a.size)}</td>
              <td>
                <code>{a.md5 ?? "—"}</code>
              </td>
              <td>
                <code class="digest">{a.sha256 ?? "—"}</code>
              </td>
              <td>
                {/* The presigned URL is the credential for this one object until it expires: no token leaves the tab. */}
                <a href={a.url} download rel="noreferrer">
                  {a.path.split("/").at(-1)}
                </a>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <p class="hint">Download links are presigned and work until {props.expires}.</p>
    </>
  );
}

function Attestations(props: { artifacts: Artifact[] }) {
  const present = ATTESTATIONS.flatMap((k) => props.artifacts.filter((a) => a.type === k.type).map((a) => ({ ...k, a })));
  if (present.length === 0) return null;
  return (
    <>
      <h2>SBOM, lock and provenance</h2>
      <ul class="attestations">
        {present.map(({ label, a }) => (
          <li key={a.path}>
            <a href={a.url} download rel="noreferrer">
              {label}
            </a>{" "}
            <span class="hint">
              {a.path.split("/").at(-1)}, {bytes(a.size)}
            </span>
          </li>
        ))}
      </ul>
    </>
  );
}

/** The verify boots the job made, each with its serial log: shown on demand, downloadable. */
function Verify(props: { boots: ImageVerify[] | undefined; artifacts: Artifact[] }) {
  const boots = props.boots;
  return (
    <>
      <h2>Boot verification</h2>
      {boots === undefined ? (
        <p>No record of verification: the image was made before Kiln kept one, or not by a Kiln job.</p>
      ) : boots.length === 0 ? (
        <p>Not verified: the job booted nothing (verify never, or a recipe that asks for no boot).</p>
      ) : (
        <table class="verify-boots">
          <caption class="visually-hidden">Verify boots</caption>
          <thead>
            <tr>
              <th scope="col">Flavor</th>
              <th scope="col">Target</th>
              <th scope="col">Result</th>
              <th scope="col">Time</th>
              <th scope="col">Serial log</th>
            </tr>
          </thead>
          <tbody>
            {boots.map((b) => (
              <tr key={`${b.flavor} ${b.target ?? ""}`}>
                <td>{b.flavor}</td>
                <td>{b.target ?? "pxe"}</td>
                <td class={b.ok ? "verify-passed" : "verify-failed"}>
                  {b.ok ? "passed" : `failed${b.reason ? `: ${b.reason}` : ""}`}
                  {b.cached ? " (cached: the same bytes booted before)" : ""}
                </td>
                <td>{b.cached ? "—" : seconds(b.seconds)}</td>
                <td>{b.log ? <SerialLog path={b.log} url={props.artifacts.find((a) => a.path === b.log)?.url} name={`${b.flavor} ${b.target ?? "pxe"}`} /> : "none (no boot made)"}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </>
  );
}

function SerialLog(props: { path: string; url: string | undefined; name: string }) {
  const [text, setText] = useState<string | undefined>(undefined);
  const [error, setError] = useState<Error | undefined>(undefined);
  return (
    <details
      onToggle={(e) => {
        if (e.currentTarget.open && text === undefined) apiText(artifactApiPath(props.path)).then(setText, setError);
      }}
    >
      <summary>Serial log of {props.name}</summary>
      {props.url ? (
        <a href={props.url} download rel="noreferrer">
          Download
        </a>
      ) : null}
      <ErrorBox error={error} />
      {text === undefined ? null : <pre class="wrap serial">{text}</pre>}
    </details>
  );
}

function PackageDiff(props: { diff: NonNullable<NonNullable<ImageRecord["kiln"]>["package_diff"]> }) {
  const d = props.diff;
  return (
    <>
      <h2>Package changes against the source image</h2>
      <ul class="diff">
        {d.added.map((p) => (
          <li class="added">+ {p.name} {p.version}</li>
        ))}
        {d.removed.map((p) => (
          <li class="removed">− {p.name} {p.version}</li>
        ))}
        {d.changed.map((p) => (
          <li class="changed">
            ~ {p.name} {p.from} → {p.to}
          </li>
        ))}
      </ul>
      {d.added.length + d.removed.length + d.changed.length === 0 ? <p>No package changes.</p> : null}
    </>
  );
}

function Packages(props: { text: string }) {
  const [q, setQ] = useState("");
  const all = useMemo(
    () =>
      props.text
        .split("\n")
        .filter(Boolean)
        .map((l) => l.split("\t") as [string, string?]),
    [props.text],
  );
  const shown = all.filter(([n]) => n.includes(q.trim()));
  return (
    <>
      <h2>Packages ({all.length})</h2>
      <label>
        Search packages <input type="search" value={q} onInput={(e) => setQ(e.currentTarget.value)} />
      </label>
      <table class="packages">
        <caption class="visually-hidden">Packages</caption>
        <thead>
          <tr>
            <th scope="col">Package</th>
            <th scope="col">Version</th>
          </tr>
        </thead>
        <tbody>
          {shown.slice(0, 500).map(([n, v]) => (
            <tr key={n}>
              <td>{n}</td>
              <td>{v ?? ""}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {shown.length > 500 ? <p class="hint">Showing 500 of {shown.length}: search to narrow.</p> : null}
    </>
  );
}

function Metadata(props: { image: ImageRecord; onChange: () => void }) {
  const canWrite = useCanWrite();
  const [key, setKey] = useState("");
  const [value, setValue] = useState("");
  const [error, setError] = useState<Error | undefined>(undefined);
  const patch = async (metadata: { operation: "set" | "remove"; key: string; value?: string }) => {
    try {
      await api("PATCH", `/v3/images/${props.image.id}`, { metadata });
      setError(undefined);
      setKey("");
      setValue("");
      props.onChange();
    } catch (e) {
      setError(e as Error);
    }
  };
  const entries = Object.entries(props.image.metadata ?? {});
  return (
    <>
      <h2>Metadata</h2>
      {entries.length === 0 ? <p>No metadata.</p> : null}
      <dl class="facts">
        {entries.map(([k, v]) => (
          <>
            <dt>{k}</dt>
            <dd>
              {v}{" "}
              {canWrite ? (
                <button type="button" aria-label={`Remove ${k}`} onClick={() => void patch({ operation: "remove", key: k })}>
                  Remove
                </button>
              ) : null}
            </dd>
          </>
        ))}
      </dl>
      {canWrite ? (
        <form
          class="inline"
          onSubmit={(e) => {
            e.preventDefault();
            void patch({ operation: "set", key, value });
          }}
        >
          <label>
            Key <input value={key} required onInput={(e) => setKey(e.currentTarget.value)} />
          </label>
          <label>
            Value <input value={value} onInput={(e) => setValue(e.currentTarget.value)} />
          </label>
          <button type="submit">Set</button>
        </form>
      ) : null}
      <ErrorBox error={error} />
    </>
  );
}
