/**
 * A recipe folder, chosen (`<input webkitdirectory>`) or dropped (DataTransferItem.webkitGetAsEntry),
 * packed in the browser into the .tar.gz the service takes: nanotar writes the ustar members (a
 * small, well-kept, pure-JS writer) and CompressionStream('gzip') compresses them. The folder's own
 * name is dropped from every path, so recipe.yaml lands at the archive's root, as
 * `tar -czf recipe.tar.gz -C DIR .` would put it.
 */
import { createTar } from "nanotar";

export interface FolderFile {
  /** Relative to the folder, / separated. */
  path: string;
  file: File;
}

/** The files of a dropped folder, read recursively (readEntries answers in batches until it answers none). */
export async function filesOfEntry(root: FileSystemDirectoryEntry): Promise<FolderFile[]> {
  const out: FolderFile[] = [];
  const walk = async (dir: FileSystemDirectoryEntry, prefix: string): Promise<void> => {
    const reader = dir.createReader();
    for (;;) {
      const batch = await new Promise<FileSystemEntry[]>((ok, fail) => reader.readEntries(ok, fail));
      if (batch.length === 0) return;
      for (const e of batch) {
        if (e.isDirectory) await walk(e as FileSystemDirectoryEntry, `${prefix}${e.name}/`);
        else if (e.isFile) out.push({ path: `${prefix}${e.name}`, file: await new Promise<File>((ok, fail) => (e as FileSystemFileEntry).file(ok, fail)) });
      }
    }
  };
  await walk(root, "");
  return out;
}

/** The files an `<input webkitdirectory>` gives, their paths without the chosen folder's name. */
export function filesOfInput(list: FileList): FolderFile[] {
  return [...list].map((file) => ({ path: file.webkitRelativePath.split("/").slice(1).join("/") || file.name, file }));
}

/** ustar without a prefix field (nanotar writes none) holds names of at most 100 bytes. */
const MAX_NAME = 100;

/**
 * The .tar.gz of the folder's files. Refuses (with the file's name) a path too long for the tar
 * format rather than cutting it; the service checks everything else the archive holds.
 */
export async function folderTarGz(files: FolderFile[], folderName: string): Promise<File> {
  const enc = new TextEncoder();
  const dirs = new Set<string>();
  for (const f of files) {
    const parts = f.path.split("/");
    for (let n = 1; n < parts.length; n++) dirs.add(`./${parts.slice(0, n).join("/")}/`);
  }
  const members: Array<{ name: string; data?: Uint8Array; attrs: { mode: string; mtime: number } }> = [{ name: "./", attrs: { mode: "755", mtime: 0 } }];
  for (const d of [...dirs].sort()) members.push({ name: d, attrs: { mode: "755", mtime: 0 } });
  for (const f of [...files].sort((a, b) => (a.path < b.path ? -1 : 1))) {
    const name = `./${f.path}`;
    if (enc.encode(name).length > MAX_NAME) throw new Error(`${f.path}: the path is longer than the ${MAX_NAME} bytes a tar name holds; shorten it, or pack the folder with tar -czf and upload the .tar.gz`);
    members.push({ name, data: new Uint8Array(await f.file.arrayBuffer()), attrs: { mode: "644", mtime: f.file.lastModified } });
  }
  let tar = createTar(members);
  // End of archive: two zero blocks. nanotar pads to a 10 KiB record, which holds them unless
  // the members fill the record exactly; then a record of zeros is added.
  if (tar.subarray(tar.length - 1024).some((b) => b !== 0)) {
    const padded = new Uint8Array(tar.length + 10240);
    padded.set(tar);
    tar = padded;
  }
  const gz = await new Response(new Blob([tar as Uint8Array<ArrayBuffer>]).stream().pipeThrough(new CompressionStream("gzip"))).blob();
  return new File([gz], `${folderName || "recipe"}.tar.gz`, { type: "application/gzip" });
}
