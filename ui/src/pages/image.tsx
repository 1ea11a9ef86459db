/**
 * One image: its record, its artifacts (size and md5 from the service, download through the
 * presigned URL), boot-params, the package manifest (searchable), the package diff against its
 * source image, metadata editing and delete (undelete is on the Deleted page).
 */
import { useMemo, useState } from "preact/hooks";
import { api, apiHead, apiText } from "../api.js";
import { useCanWrite } from "../context.js";
import { ErrorBox } from "../components/status.js";
import { artifactApiPath, bytes, when } from "../format.js";
import { useLoad } from "../hooks.js";
import type { ImageRecord, PresignedUrls } from "../records.js";
import { go, href } from "../router.js";

type Artifact = PresignedUrls["artifacts"][number] & { size?: number };

const BOOT_PARAMS = "application/vnd.cray.image.parameters.boot";
const PACKAGE_LIST = "text/tab-separated-values";

async function loadArtifacts(image: ImageRecord): Promise<{ urls: PresignedUrls; artifacts: Artifact[]; bootParams: Array<[string, string]>; packages: string | undefined } | undefined> {
  if (!image.link) return undefined;
  const urls = await api<PresignedUrls>("GET", `/v3/images/${image.id}/urls`);
  const artifacts: Artifact[] = await Promise.all(urls.artifacts.map(async (a) => ({ ...a, size: (await apiHead(artifactApiPath(a.path)).catch(() => ({ size: undefined }))).size })));
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
      {!i.link ? <p>No artifacts yet: a job links the image when it ends.</p> : !files.data ? <p>Loading…</p> : <Artifacts artifacts={files.data.artifacts} expires={files.data.urls.expires_at} />}
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
