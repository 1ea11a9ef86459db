/**
 * Upload a recipe: the record (POST /v3/recipes), then its archive (PUT /v3/recipes/{id}/archive),
 * which the service checks before it keeps it. A rejected archive leaves no record behind (the
 * unlinked record is removed for good through the v2 route, so it does not fill Deleted), and
 * each field error of the service's problem is shown under its field; errors inside recipe.yaml
 * go under the archive. The archive is a .tar.gz chosen or dropped as it is, or a folder chosen or
 * dropped, packed into one here (folder-archive.ts).
 */
import { useState } from "preact/hooks";
import { api, ApiError, apiUpload } from "../api.js";
import { useCanWrite } from "../context.js";
import { FieldError, OtherErrors } from "../components/fields.js";
import { ARCHES, LINUX_DISTRIBUTIONS, RECIPE_TYPES, type RecipeRecord } from "../records.js";
import { go } from "../router.js";
import { filesOfEntry, filesOfInput, folderTarGz, type FolderFile } from "../folder-archive.js";

const FIELDS = ["name", "recipe_type", "linux_distribution", "arch", "template_dictionary", "archive"];

/** The archive step's problems name fields of the record or of recipe.yaml: the latter belong to the archive field. */
function archiveProblems(e: unknown): unknown {
  if (!(e instanceof ApiError)) return e;
  const errors = e.errors.map((p) => (FIELDS.includes(p.path.split(/[.[]/)[0]!) ? p : { ...p, path: `archive.${p.path}` }));
  return new ApiError(e.status, e.detail, e.code, errors);
}

export function NewRecipePage() {
  const canWrite = useCanWrite();
  const [name, setName] = useState("");
  const [type, setType] = useState("kiln");
  const [distro, setDistro] = useState("debian12");
  const [arch, setArch] = useState("x86_64");
  const [dict, setDict] = useState<Array<{ key: string; value: string }>>([]);
  const [file, setFile] = useState<File | undefined>(undefined);
  const [over, setOver] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<Error | undefined>(undefined);
  if (!canWrite) return <p>A read-only token cannot upload recipes.</p>;

  const submit = async (e: Event) => {
    e.preventDefault();
    if (!file) return setError(new ApiError(400, "choose the recipe archive", "", [{ path: "archive", message: "drop a .tar.gz of the recipe folder here, or choose one" }]));
    setBusy(true);
    let created: RecipeRecord | undefined;
    try {
      created = await api<RecipeRecord>("POST", "/v3/recipes", { name, recipe_type: type, linux_distribution: distro, arch, template_dictionary: dict.filter((d) => d.key) });
      await apiUpload(`/v3/recipes/${created.id}/archive`, file).catch((err: unknown) => {
        throw archiveProblems(err);
      });
      go("recipes", created.id);
    } catch (err) {
      if (created) await api("DELETE", `/v2/recipes/${created.id}`).catch(() => undefined);
      setError(err as Error);
    } finally {
      setBusy(false);
    }
  };
  const pack = async (files: FolderFile[], folder: string) => {
    try {
      setError(undefined);
      if (files.length === 0) throw new Error(`the folder ${folder} holds no files`);
      setFile(await folderTarGz(files, folder));
    } catch (err) {
      setFile(undefined);
      setError(new ApiError(400, (err as Error).message, "", [{ path: "archive", message: (err as Error).message }]));
    }
  };
  const drop = (e: DragEvent) => {
    e.preventDefault();
    setOver(false);
    // A dropped folder is only readable as an entry, and only during the drop event.
    const entry = e.dataTransfer?.items[0]?.webkitGetAsEntry();
    if (entry?.isDirectory) {
      void filesOfEntry(entry as FileSystemDirectoryEntry).then((files) => pack(files, entry.name));
      return;
    }
    const f = e.dataTransfer?.files[0];
    if (f) setFile(f);
  };
  return (
    <section>
      <h1>Upload a recipe</h1>
      <form class="form" onSubmit={(e) => void submit(e)}>
        <label for="name">Name</label>
        <input id="name" required value={name} onInput={(e) => setName(e.currentTarget.value)} aria-describedby="name-error" />
        <FieldError error={error} field="name" id="name-error" />
        <label for="recipe_type">Type</label>
        <select id="recipe_type" value={type} onChange={(e) => setType(e.currentTarget.value)}>
          {RECIPE_TYPES.map((t) => (
            <option value={t}>{t}</option>
          ))}
        </select>
        <FieldError error={error} field="recipe_type" id="recipe_type-error" />
        <label for="linux_distribution">Distribution</label>
        <select id="linux_distribution" value={distro} onChange={(e) => setDistro(e.currentTarget.value)} aria-describedby="linux_distribution-error">
          {LINUX_DISTRIBUTIONS.map((d) => (
            <option value={d}>{d}</option>
          ))}
        </select>
        <FieldError error={error} field="linux_distribution" id="linux_distribution-error" />
        <label for="arch">Arch</label>
        <select id="arch" value={arch} onChange={(e) => setArch(e.currentTarget.value)}>
          {ARCHES.map((a) => (
            <option value={a}>{a}</option>
          ))}
        </select>
        <fieldset>
          <legend>Template dictionary ({"{{ key }}"} in recipe.yaml)</legend>
          {dict.map((d, n) => (
            <div class="pair">
              <label>
                Key <input value={d.key} onInput={(e) => setDict(dict.map((x, m) => (m === n ? { ...x, key: e.currentTarget.value } : x)))} />
              </label>
              <label>
                Value <input value={d.value} onInput={(e) => setDict(dict.map((x, m) => (m === n ? { ...x, value: e.currentTarget.value } : x)))} />
              </label>
              <button type="button" onClick={() => setDict(dict.filter((_, m) => m !== n))}>
                Remove
              </button>
            </div>
          ))}
          <button type="button" onClick={() => setDict([...dict, { key: "", value: "" }])}>
            Add a key
          </button>
          <FieldError error={error} field="template_dictionary" id="template_dictionary-error" />
        </fieldset>
        <label for="archive">Recipe archive (.tar.gz of the folder with recipe.yaml at its root)</label>
        <div
          class={over ? "drop over" : "drop"}
          onDragOver={(e) => {
            e.preventDefault();
            setOver(true);
          }}
          onDragLeave={() => setOver(false)}
          onDrop={drop}
        >
          <p aria-live="polite">{file ? `${file.name} (${file.size} bytes)` : "Drop the recipe folder or its .tar.gz here, or choose either:"}</p>
          <input id="archive" type="file" accept=".tar.gz,.tgz,.tar,application/gzip" onChange={(e) => setFile(e.currentTarget.files?.[0])} aria-describedby="archive-error" />
          <p>
            <label for="folder">Recipe folder (packed into a .tar.gz here)</label>{" "}
            <input
              id="folder"
              type="file"
              {...{ webkitdirectory: true }}
              onChange={(e) => {
                const list = e.currentTarget.files;
                if (list?.length) void pack(filesOfInput(list), list[0]!.webkitRelativePath.split("/")[0] ?? "recipe");
              }}
              aria-describedby="archive-error"
            />
          </p>
        </div>
        <FieldError error={error} field="archive" id="archive-error" />
        <button type="submit" disabled={busy}>
          {busy ? "Uploading…" : "Upload"}
        </button>
        <OtherErrors error={error} fields={FIELDS} />
      </form>
    </section>
  );
}
