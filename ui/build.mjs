// Builds the web console into dist/ui/ (run by `npm run build:ui`, and so by `npm ci` through
// `prepare`): esbuild bundles ui/src/main.tsx with Preact into one app.js and the styles into one
// app.css, and copies index.html. Nothing is fetched at build or run time: the files `kiln serve`
// sends are all there is (docs/service.md#web-console).
import { build } from "esbuild";
import { copyFile, mkdir, rm } from "node:fs/promises";
import { URL, fileURLToPath } from "node:url";

const here = (p) => fileURLToPath(new URL(p, import.meta.url));
const out = here("../dist/ui/");

await rm(out, { recursive: true, force: true });
await mkdir(out, { recursive: true });
await build({
  entryPoints: { app: here("src/main.tsx") },
  bundle: true,
  minify: true,
  sourcemap: true,
  format: "esm",
  target: ["es2022"],
  jsx: "automatic",
  jsxImportSource: "preact",
  outdir: out,
  logLevel: "warning",
});
await build({ entryPoints: { app: here("src/style.css") }, bundle: true, minify: true, outdir: out, logLevel: "warning" });
await copyFile(here("index.html"), `${out}index.html`);
