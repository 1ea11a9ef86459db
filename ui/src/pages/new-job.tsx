/** The create and customize job form (POST /v3/jobs), as `kiln ims jobs create` takes it. */
import { useState } from "preact/hooks";
import { api } from "../api.js";
import { useCanWrite } from "../context.js";
import { FieldError, OtherErrors } from "../components/fields.js";
import { useLoad } from "../hooks.js";
import type { ImageRecord, JobRecord, PublicKeyRecord, RecipeRecord } from "../records.js";
import { go } from "../router.js";

const FIELDS = ["job_type", "artifact_id", "public_key_id", "image_root_archive_name", "enable_debug", "ssh_containers"];

export function NewJobPage() {
  const canWrite = useCanWrite();
  const initial = new URLSearchParams(location.hash.split("?")[1] ?? "");
  const [type, setType] = useState(initial.get("type") === "customize" ? "customize" : "create");
  const [artifact, setArtifact] = useState(initial.get("from") ?? "");
  const [key, setKey] = useState("");
  const [name, setName] = useState("");
  const [debug, setDebug] = useState(false);
  const [jail, setJail] = useState(true);
  const [error, setError] = useState<Error | undefined>(undefined);
  const choices = useLoad(
    async () => ({
      recipes: (await api<RecipeRecord[]>("GET", "/v3/recipes")).filter((r) => r.link),
      images: (await api<ImageRecord[]>("GET", "/v3/images")).filter((i) => i.link),
      keys: await api<PublicKeyRecord[]>("GET", "/v3/public-keys"),
    }),
    [],
  );
  if (!canWrite) return <p>A read-only token cannot start jobs.</p>;
  const submit = async (e: Event) => {
    e.preventDefault();
    const body: Record<string, unknown> = { job_type: type, artifact_id: artifact, public_key_id: key, image_root_archive_name: name, enable_debug: debug };
    if (type === "customize") body.ssh_containers = [{ name: "customize", jail }];
    try {
      const job = await api<JobRecord>("POST", "/v3/jobs", body);
      go("jobs", job.id);
    } catch (err) {
      setError(err as Error);
    }
  };
  const c = choices.data;
  const from = type === "create" ? (c?.recipes ?? []).map((r) => [r.id, `${r.name} (${r.linux_distribution}, ${r.arch})`]) : (c?.images ?? []).map((i) => [i.id, `${i.name} (${i.arch}, ${i.created.slice(0, 16)})`]);
  return (
    <section>
      <h1>New job</h1>
      <form class="form" onSubmit={(e) => void submit(e)}>
        <fieldset>
          <legend>Job type</legend>
          {["create", "customize"].map((t) => (
            <label class="choice">
              <input type="radio" name="job_type" value={t} checked={type === t} onChange={() => (setType(t), setArtifact(""))} /> {t === "create" ? "Create: build a recipe" : "Customize: change an image over SSH"}
            </label>
          ))}
        </fieldset>
        <label for="artifact_id">{type === "create" ? "Recipe" : "Image"}</label>
        <select id="artifact_id" required value={artifact} onChange={(e) => setArtifact(e.currentTarget.value)} aria-describedby="artifact_id-error">
          <option value="">choose…</option>
          {from.map(([id, label]) => (
            <option value={id}>{label}</option>
          ))}
        </select>
        <FieldError error={error} field="artifact_id" id="artifact_id-error" />
        <label for="public_key_id">Public key (for SSH sessions)</label>
        <select id="public_key_id" required value={key} onChange={(e) => setKey(e.currentTarget.value)} aria-describedby="public_key_id-error">
          <option value="">choose…</option>
          {(c?.keys ?? []).map((k) => (
            <option value={k.id}>{k.name}</option>
          ))}
        </select>
        <FieldError error={error} field="public_key_id" id="public_key_id-error" />
        <label for="image_root_archive_name">Name of the new image</label>
        <input id="image_root_archive_name" required value={name} onInput={(e) => setName(e.currentTarget.value)} aria-describedby="image_root_archive_name-error" />
        <FieldError error={error} field="image_root_archive_name" id="image_root_archive_name-error" />
        <label class="choice">
          <input type="checkbox" checked={debug} onChange={(e) => setDebug(e.currentTarget.checked)} /> Debug: open a shell on a failed stage
        </label>
        {type === "customize" ? (
          <label class="choice">
            <input type="checkbox" checked={jail} onChange={(e) => setJail(e.currentTarget.checked)} /> Jail: the session runs inside the image (else the image is at /mnt/image)
          </label>
        ) : null}
        <button type="submit">Start job</button>
        <OtherErrors error={error} fields={FIELDS} />
      </form>
    </section>
  );
}
