/**
 * The web console in a real browser: Debian's chromium driven by playwright-core (no browser
 * download) against a real `kiln serve` (PGlite, filesystem store, no worker). The catalog is
 * seeded through the API, as the service tests do; one image gets real objects in the store
 * (a rootfs, its package list, boot-params) so its page has artifacts to show and download.
 *
 * Every page is screenshotted into test-output/ui/ (gitignored) and checked with axe-core, and any
 * Content-Security-Policy violation the browser reports fails the test.
 */
import { describe, before, after, test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import path from "node:path";
import { gzipSync } from "node:zlib";
import { chromium, type Browser, type Page } from "playwright-core";
import { createToken, startServe, type ServiceProcess } from "../helpers/service-process.js";
import { writeTar } from "../helpers/tar-writer.js";
import { appendLogLines, jobRecord, seedPublishedImage } from "../helpers/ui-seed.js";
import { BUCKETS } from "../../src/catalog/objects.js";
import { ARTIFACT_KINDS, SERIAL_LOG_TYPE } from "../../src/artifacts/types.js";
import type { ImageRecord } from "../../src/catalog/records.js";
import { Catalog } from "../../src/catalog/catalog.js";
import { openStore } from "../../src/store/open-store.js";
import type { ObjectStore } from "../../src/store/object-store.js";

const CHROMIUM = "/usr/bin/chromium";
const OUT = path.resolve(import.meta.dirname, "../../../test-output/ui");
const AXE = await readFile(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");

let dir: string;
let serve: ServiceProcess;
let store: ObjectStore;
let browser: Browser;
let admin: string;
let reader: string;
const rootfs = randomBytes(96 * 1024);
const rootfsMd5 = createHash("md5").update(rootfs).digest("hex");
let seeded: { id: string; name: string };
/** Two images as jobs publish them (size, verify boots, serial log, attestations), seeded before the service starts. */
let verified: ImageRecord;
let failing: ImageRecord;
const MIB = 1024 * 1024;
const serialLog = "SeaBIOS (version 1.16.2)\nLinux version 6.1.0-28-amd64\nkiln-verify: reached userspace (multi-user.target)\n";
const spdx = JSON.stringify({ spdxVersion: "SPDX-2.3", name: "verified-image", packages: [{ name: "bash", versionInfo: "5.2.15-2+b7" }] });
const lock = JSON.stringify({ lockVersion: 1, root: { packages: [{ name: "bash", version: "5.2.15-2+b7" }] } });
const built = jobRecord({
  image_root_archive_name: "built-image",
  kiln: {
    stages: [
      { name: "bootstrap", key: "k1", cached: true, seconds: 0.4 },
      { name: "packages", key: "k2", cached: false, seconds: 41.2 },
      { name: "kernel-generic", key: "k3", cached: false, seconds: 18.9 },
      { name: "squashfs", key: "k4", cached: false, seconds: 3.1 },
    ],
    cache_hits: 1,
    status_seconds: { creating: 0.2, fetching_recipe: 0.1, building_image: 63.8, packaging_artifacts: 4.5 },
  },
});
const session = jobRecord({
  job_type: "customize",
  status: "waiting_on_user",
  image_root_archive_name: "custom-image",
  ssh_containers: [{ name: "customize", jail: true, status: "established", connection_info: { customer_access: { host: "10.1.2.3", port: 2222 }, "cluster.local": { host: "10.1.2.3", port: 2222 } } }],
  kiln: { ended: null, ssh_host_key: "SHA256:7bN3m2Yq0f1rA5cP9wXk4sT6uV8zD2eH1jL3nQ5oR7s", status_seconds: { creating: 0.1, waiting_on_user: 12 }, status_since: "2026-01-01T00:00:00.000Z" },
});

async function call<T>(method: string, url: string, body?: unknown, token = admin): Promise<T> {
  const r = await fetch(serve.url + url, { method, headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { "content-type": "application/json" }) }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
  assert.ok(r.ok, `${method} ${url}: ${r.status} ${await r.clone().text()}`);
  return (r.status === 204 ? undefined : await r.json()) as T;
}

/** Puts an image's objects in the store and registers it linked to its manifest. */
async function seedImageWithArtifacts(name: string): Promise<{ id: string; name: string }> {
  const at = `seed/${randomUUID()}`;
  const put = async (key: string, body: Buffer | string, type: string) => {
    const buf = Buffer.from(body);
    const md5 = createHash("md5").update(buf).digest("hex");
    const info = await store.put("ims", `${at}/${key}`, buf, { contentType: type, size: buf.length, metadata: { md5sum: md5 } });
    return { md5, link: { path: `s3://ims/${at}/${key}`, etag: info.etag, type: "s3" } };
  };
  const artifacts = [
    { type: "application/vnd.cray.image.rootfs.squashfs", ...(await put("rootfs", rootfs, "application/octet-stream")) },
    { type: "text/tab-separated-values", ...(await put("rootfs.manifest", "bash\t5.2.15-2+b7\ncoreutils\t9.1-1\nopenssh-server\t1:9.2p1-2+deb12u3\nsystemd\t252.33-1~deb12u1\n", "text/tab-separated-values")) },
    { type: "application/vnd.cray.image.parameters.boot", flavor: "generic", ...(await put("boot_parameters", "root=squash:${squashfs_url} ip=dhcp console=ttyS0\n", "text/plain")) },
  ];
  const manifest = await put("manifest.json", JSON.stringify({ version: "1.0", created: "2026-01-01 00:00:00", artifacts }), "application/json");
  return call("POST", "/v3/images", { name, arch: "x86_64", link: manifest.link, metadata: { team: "fleet" } });
}

/** A page with the console open, logged in with `token`; CSP violations collected. */
async function open(token: string): Promise<{ page: Page; csp: string[] }> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const csp: string[] = [];
  page.on("console", (m) => /Content.Security.Policy/i.test(m.text()) && csp.push(m.text()));
  await page.goto(`${serve.url}/`);
  assert.equal(new URL(page.url()).pathname, "/ui/", "a browser at / lands on the console");
  await page.getByLabel("API token").fill(token);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.getByRole("heading", { name: "Images" }).waitFor();
  return { page, csp };
}

/** Screenshot, and axe-core: no serious or critical violations. */
async function check(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: path.join(OUT, `${name}.png`), fullPage: true });
  // evaluate() runs through the DevTools protocol, which the page's CSP does not govern: axe is
  // injected without loosening the policy under test.
  await page.evaluate(AXE);
  const violations = await page.evaluate(async () => {
    const r = await (globalThis as unknown as { axe: { run(): Promise<{ violations: Array<{ id: string; impact: string; help: string; nodes: Array<{ target: string[] }> }> }> } }).axe.run();
    return r.violations.filter((v) => v.impact === "serious" || v.impact === "critical").map((v) => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
  });
  assert.deepEqual(violations, [], `${name}: axe-core`);
}

describe("the web console in chromium", { timeout: 300_000 }, () => {
  before(async () => {
    await mkdir(OUT, { recursive: true });
    dir = await mkdtemp("/var/tmp/kiln-ui-");
    const data = path.join(dir, "data");
    // Jobs as a worker leaves them (stages, a session): the API only makes `creating` ones.
    const catalog = await Catalog.open(undefined, data);
    await catalog.insert("jobs", built);
    await appendLogLines(catalog, built.id, 200, 50);
    await catalog.insert("jobs", session);
    store = await openStore(`file://${path.join(data, "objects")}`);
    for (const b of BUCKETS) await store.ensureBucket(b);
    verified = await seedPublishedImage(catalog, store, {
      name: "verified-image",
      files: {
        rootfs: [ARTIFACT_KINDS.squashfs.type, randomBytes(1.5 * MIB)],
        "sbom.spdx.json": [ARTIFACT_KINDS.sbomSpdx.type, spdx],
        "sbom.cdx.json": [ARTIFACT_KINDS.sbomCycloneDx.type, JSON.stringify({ bomFormat: "CycloneDX", specVersion: "1.6" })],
        "kiln.lock": [ARTIFACT_KINDS.lock.type, lock],
        "provenance.json": [ARTIFACT_KINDS.provenance.type, JSON.stringify({ _type: "https://in-toto.io/Statement/v1" })],
        "logs/verify-generic-pxe.log": [SERIAL_LOG_TYPE, serialLog, "generic"],
      },
      verify: (id) => [
        { flavor: "generic", target: "pxe", ok: true, seconds: 42.5, log: `s3://boot-images/${id}/logs/verify-generic-pxe.log` },
        { flavor: "generic", target: "qcow2-bios", ok: true, seconds: 0, cached: true, log: null },
      ],
    });
    failing = await seedPublishedImage(catalog, store, {
      name: "failing-image",
      flavors: ["cloud"],
      files: { rootfs: [ARTIFACT_KINDS.squashfs.type, randomBytes(5 * MIB)] },
      verify: [{ flavor: "cloud", target: "pxe", ok: false, seconds: 200, reason: "did not reach userspace", log: null }],
    });
    await catalog.close();
    admin = await createToken(data, "admin");
    reader = await createToken(data, "read-only");
    serve = await startServe(["--data-dir", data, "--no-worker"]);
    seeded = await seedImageWithArtifacts("web-server");
    for (const [name, arch] of [["db-server", "x86_64"], ["edge-arm", "aarch64"], ["build-host", "x86_64"]]) await call("POST", "/v3/images", { name, arch });
    await call("POST", "/v3/public-keys", { name: "ops", public_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGs7oMbS+8fZVdlkCqCcc8TTJ1Cf3bBeUcsbzXwV5k9n ops@example" });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
  });
  after(async () => {
    await browser?.close();
    assert.equal(await serve?.stop(), 143);
    await store?.close();
    await rm(dir, { recursive: true, force: true });
  });

  test("log in with a token; the images list shows the seeded images, filters by name and arch, and sorts", async () => {
    const { page, csp } = await open(admin);
    const rows = page.locator("tbody tr");
    await rows.first().waitFor();
    assert.equal(await rows.count(), 6);
    for (const n of ["web-server", "db-server", "edge-arm", "build-host", "verified-image", "failing-image"]) assert.ok(await page.getByRole("link", { name: n }).isVisible(), n);
    await page.getByLabel("Arch").selectOption("aarch64");
    assert.equal(await rows.count(), 1);
    assert.equal(await rows.first().locator("td").first().innerText(), "edge-arm");
    await page.getByLabel("Arch").selectOption("");
    await page.getByLabel("Name or id").fill("server");
    assert.equal(await rows.count(), 2);
    await page.getByLabel("Name or id").fill("");
    await page.getByRole("button", { name: "Name" }).click();
    assert.deepEqual(await page.locator("tbody tr td:first-child").allInnerTexts(), ["build-host", "db-server", "edge-arm", "failing-image", "verified-image", "web-server"]);
    await check(page, "images");
    assert.deepEqual(csp, [], "no CSP violations");
    await page.context().close();
  });

  test("the images list filters by flavor, verify status and size, and sorts by size and verify status", async () => {
    const { page, csp } = await open(admin);
    const rows = page.locator("tbody tr");
    const names = () => page.locator("tbody tr td:first-child").allInnerTexts();
    await rows.first().waitFor();
    assert.match(await page.locator("tr", { hasText: "verified-image" }).innerText(), /1\.5\d* MiB.*\s+generic\s+passed/s);
    await page.getByLabel("Verify").selectOption("passed");
    assert.deepEqual(await names(), ["verified-image"]);
    await page.getByLabel("Verify").selectOption("failed");
    assert.deepEqual(await names(), ["failing-image"]);
    await page.getByLabel("Verify").selectOption("unknown");
    assert.equal(await rows.count(), 4, "the images POSTed by hand have no verify record");
    await page.getByLabel("Verify").selectOption("");
    await page.getByLabel("Flavor").selectOption("cloud");
    assert.deepEqual(await names(), ["failing-image"]);
    await page.getByLabel("Flavor").selectOption("");
    await page.getByLabel("Size from (MiB)").fill("4");
    assert.deepEqual(await names(), ["failing-image"]);
    await page.getByLabel("Size from (MiB)").fill("1");
    await page.getByLabel("to (MiB)").fill("2");
    assert.deepEqual(await names(), ["verified-image"]);
    await page.getByLabel("Size from (MiB)").fill("");
    await page.getByLabel("to (MiB)").fill("");
    const size = page.getByRole("button", { name: "Size" });
    await size.click();
    await size.click();
    assert.deepEqual((await names()).slice(0, 2), ["failing-image", "verified-image"], "largest first; images of unknown size last");
    assert.equal(await page.locator("th", { has: size }).getAttribute("aria-sort"), "descending");
    await page.getByRole("button", { name: "Verify" }).click();
    assert.deepEqual((await names()).slice(0, 1), ["failing-image"], "failed sorts before passed");
    await check(page, "images-filtered");
    assert.deepEqual(csp, []);
    await page.context().close();
  });

  test("a published image's page shows sha256 beside md5, SBOM, lock and provenance links, and its verify boots with the serial log", async () => {
    const { page, csp } = await open(admin);
    await page.goto(`${serve.url}/ui/#/images/${verified.id}`);
    await page.getByRole("heading", { name: "Image verified-image" }).waitFor();
    const rootRow = page.locator("tr", { hasText: ARTIFACT_KINDS.squashfs.type });
    await rootRow.waitFor();
    const rootfsSha = (await store.head("boot-images", `${verified.id}/rootfs`)).metadata.sha256!;
    assert.match(await rootRow.innerText(), new RegExp(rootfsSha), "the sha256 the job recorded");
    assert.equal(await page.locator("table", { hasText: "md5" }).locator("tr", { hasText: SERIAL_LOG_TYPE }).count(), 0, "serial logs are not listed as artifacts");
    for (const [label, body] of [["SBOM (SPDX)", spdx], ["kiln.lock", lock]] as const) {
      const link = page.locator("ul.attestations").getByRole("link", { name: label });
      const href = await link.getAttribute("href");
      assert.ok(href && !href.includes(admin), `${label}: presigned, no token`);
      assert.equal(await (await fetch(new URL(href, serve.url))).text(), body, `${label}: the link gives the file`);
    }
    assert.ok(await page.getByRole("link", { name: "SBOM (CycloneDX)" }).isVisible());
    assert.ok(await page.getByRole("link", { name: "Provenance (in-toto)" }).isVisible());
    const boots = page.locator("table.verify-boots tbody tr");
    assert.equal(await boots.count(), 2);
    assert.match(await boots.nth(0).innerText(), /generic\s+pxe\s+passed\s+42\.5 s/);
    assert.match(await boots.nth(1).innerText(), /qcow2-bios\s+passed \(cached.*none \(no boot made\)/s);
    await page.getByText("Serial log of generic pxe").click();
    await page.locator("pre.serial", { hasText: "kiln-verify: reached userspace" }).waitFor();
    const dl = await boots.nth(0).getByRole("link", { name: "Download" }).getAttribute("href");
    assert.equal(await (await fetch(new URL(dl!, serve.url))).text(), serialLog, "the serial log's presigned link");
    await check(page, "image-verified");
    await page.goto(`${serve.url}/ui/#/images/${failing.id}`);
    await page.getByRole("heading", { name: "Image failing-image" }).waitFor();
    await page.locator("table.verify-boots tbody tr", { hasText: "failed: did not reach userspace" }).waitFor();
    await page.locator("table", { hasText: "md5" }).waitFor();
    assert.equal(await page.getByRole("heading", { name: "SBOM, lock and provenance" }).count(), 0, "no attestations, no links");
    assert.deepEqual(csp, []);
    await page.context().close();
  });

  test("the image page shows artifacts with size and md5, boot-params, searchable packages; its download link gives the artifact", async () => {
    const { page, csp } = await open(admin);
    await page.getByRole("link", { name: "web-server" }).click();
    await page.getByRole("heading", { name: "Image web-server" }).waitFor();
    const rootRow = page.locator("tr", { hasText: "application/vnd.cray.image.rootfs.squashfs" });
    await rootRow.waitFor();
    assert.match(await rootRow.innerText(), new RegExp(rootfsMd5));
    assert.match(await rootRow.innerText(), /96\.0 KiB/);
    assert.match(await page.locator("pre.wrap").innerText(), /root=squash:\$\{squashfs_url\} ip=dhcp/);
    await page.getByLabel("Search packages").fill("openssh");
    assert.deepEqual(await page.locator("table.packages tbody td:first-child").allInnerTexts(), ["openssh-server"]);
    const href = await rootRow.getByRole("link").getAttribute("href");
    assert.ok(href && !href.includes(admin), "the link is presigned, no token in it");
    const body = Buffer.from(await (await fetch(new URL(href, serve.url))).arrayBuffer());
    assert.equal(createHash("md5").update(body).digest("hex"), rootfsMd5, "the download is the artifact");
    await page.getByLabel("Key").fill("owner");
    await page.getByLabel("Value").fill("ops-team");
    await page.getByRole("button", { name: "Set" }).click();
    await page.getByText("ops-team").waitFor();
    assert.equal((await call<{ metadata: Record<string, string> }>("GET", `/v3/images/${seeded.id}`)).metadata.owner, "ops-team");
    await check(page, "image");
    assert.deepEqual(csp, []);
    await page.context().close();
  });

  test("delete an image, find it under Deleted, undelete it, and it is back in the list", async () => {
    const { page, csp } = await open(admin);
    await page.getByRole("link", { name: "db-server" }).click();
    page.once("dialog", (d) => void d.accept());
    await page.getByRole("button", { name: "Delete image" }).click();
    await page.getByRole("heading", { name: "Deleted", exact: true }).waitFor();
    const undelete = page.getByRole("button", { name: "Undelete: db-server" });
    await undelete.waitFor();
    await check(page, "deleted");
    assert.equal((await call<unknown[]>("GET", "/v3/deleted/images")).length, 1);
    await undelete.click();
    await undelete.waitFor({ state: "detached" });
    await page.getByRole("link", { name: "Images" }).click();
    await page.getByRole("link", { name: "db-server" }).waitFor();
    assert.equal((await call<unknown[]>("GET", "/v3/deleted/images")).length, 0);
    assert.deepEqual(csp, []);
    await page.context().close();
  });

  test("a bad recipe upload shows the service's field errors next to the field and leaves no record", async () => {
    const { page, csp } = await open(admin);
    await page.getByRole("link", { name: "Recipes" }).click();
    await page.getByRole("link", { name: "Upload a recipe" }).click();
    await page.getByLabel("Name", { exact: true }).fill("broken");
    const bad = gzipSync(writeTar([{ name: "./", type: "dir" }, { name: "./recipe.yaml", type: "file", content: "apiVersion: kiln/v1\nname: broken\nbase: {debian: bookworm}\npackages: 5\n" }]));
    await page.getByLabel(/Recipe archive/).setInputFiles({ name: "broken.tar.gz", mimeType: "application/gzip", buffer: bad });
    await page.getByRole("button", { name: "Upload" }).click();
    const fieldError = page.locator("#archive-error");
    await fieldError.waitFor();
    assert.match(await fieldError.innerText(), /packages/);
    assert.equal(await page.getByLabel(/Recipe archive/).getAttribute("aria-describedby"), "archive-error", "the error is tied to the field");
    await check(page, "recipe-upload-errors");
    assert.deepEqual(await call<unknown[]>("GET", "/v3/recipes"), [], "the rejected upload left no recipe");
    assert.deepEqual(await call<unknown[]>("GET", "/v3/deleted/recipes"), [], "nor a deleted one");
    assert.deepEqual(csp, []);
    await page.context().close();
  });

  test("a good recipe upload, a create job from it, the job page with its log and Cancel", async () => {
    const { page, csp } = await open(admin);
    await page.goto(`${serve.url}/ui/#/recipes/new`);
    await page.getByLabel("Name", { exact: true }).fill("tiny");
    const good = gzipSync(
      writeTar([
        { name: "./", type: "dir" },
        { name: "./recipe.yaml", type: "file", content: "apiVersion: kiln/v1\nname: tiny\nbase: {debian: bookworm, variant: minbase}\nkernels: [{flavor: generic, package: linux-image-amd64}]\n" },
      ]),
    );
    await page.getByLabel(/Recipe archive/).setInputFiles({ name: "tiny.tar.gz", mimeType: "application/gzip", buffer: good });
    await page.getByRole("button", { name: "Upload" }).click();
    await page.getByRole("heading", { name: "Recipe tiny" }).waitFor();
    await check(page, "recipe");
    await page.getByRole("link", { name: "Build it" }).click();
    await page.getByRole("heading", { name: "New job" }).waitFor();
    await page.getByLabel("Public key").selectOption({ label: "ops" });
    await page.getByLabel("Name of the new image").fill("tiny-image");
    await check(page, "new-job");
    await page.getByRole("button", { name: "Start job" }).click();
    await page.getByRole("heading", { name: /Job tiny-image/ }).waitFor();
    // No worker runs here: the job waits in the queue, and its log is open.
    assert.match(await page.locator("h1 .status").innerText(), /creating/);
    await page.locator("div.log", { hasText: "waiting for a worker" }).waitFor();
    await check(page, "job");
    await page.getByRole("button", { name: "Cancel job" }).click();
    await page.locator("h1 .status", { hasText: "error" }).waitFor();
    await page.getByRole("link", { name: "Jobs" }).click();
    await page.locator("tbody tr").first().waitFor();
    await page.getByLabel("Status").selectOption("error");
    assert.equal(await page.locator("tbody tr").count(), 1);
    assert.match(await page.locator("tbody tr").innerText(), /tiny-image/);
    await page.getByLabel("Status").selectOption("success");
    assert.deepEqual(await page.locator("tbody tr td:first-child").allInnerTexts(), ["built-image"]);
    await page.getByLabel("Status").selectOption("");
    await page.getByLabel("Type").selectOption("customize");
    assert.deepEqual(await page.locator("tbody tr td:first-child").allInnerTexts(), ["custom-image"]);
    await check(page, "jobs");
    assert.deepEqual(csp, []);
    await page.context().close();
  });

  test("a recipe folder chosen as a folder is packed into a .tar.gz in the browser; the recipe page shows recipe.yaml highlighted and the files it carries", async () => {
    const folder = path.join(dir, "web-recipe");
    const yaml = "# the smallest bootable recipe, with a file\napiVersion: kiln/v1\nname: web\nbase: {debian: bookworm, variant: minbase}\nfiles: [{path: /etc/motd, source: ./motd}]\nkernels: [{flavor: generic, package: linux-image-amd64}]\n";
    await mkdir(path.join(folder, "files"), { recursive: true });
    await writeFile(path.join(folder, "recipe.yaml"), yaml);
    await writeFile(path.join(folder, "motd"), "welcome\n");
    await writeFile(path.join(folder, "files", "sshd.conf"), "PermitRootLogin no\n");
    const { page, csp } = await open(admin);
    await page.goto(`${serve.url}/ui/#/recipes/new`);
    await page.getByLabel("Name", { exact: true }).fill("web-folder");
    await page.getByLabel("Recipe folder").setInputFiles(folder);
    await page.getByText(/web-recipe\.tar\.gz \(\d+ bytes\)/).waitFor();
    await page.getByRole("button", { name: "Upload" }).click();
    await page.getByRole("heading", { name: "Recipe web-folder" }).waitFor();
    const shown = page.locator("pre.yaml");
    await shown.waitFor();
    assert.equal(await shown.textContent(), yaml, "the file as uploaded, every character");
    assert.deepEqual((await shown.locator(".y-key").allTextContents()).slice(0, 4), ["apiVersion", "name", "base", "debian"]);
    assert.deepEqual(await shown.locator(".y-comment").allTextContents(), ["# the smallest bootable recipe, with a file"]);
    assert.ok((await shown.locator(".y-string").allTextContents()).includes("bookworm"));
    const files = page.locator("table.files tbody tr td:first-child");
    await files.first().waitFor();
    assert.deepEqual(await files.allInnerTexts(), ["files/", "files/sshd.conf", "motd", "recipe.yaml"]);
    const recipes = await call<Array<{ id: string; name: string }>>("GET", "/v3/recipes");
    const id = recipes.find((r) => r.name === "web-folder")!.id;
    assert.equal((await call<{ files: Array<{ path: string; size: number }> }>("GET", `/v3/recipes/${id}/files`)).files.find((f) => f.path === "files/sshd.conf")?.size, 19, "the service unpacked what the browser packed");
    await check(page, "recipe-folder");
    assert.deepEqual(csp, []);
    await page.context().close();
  });

  test("a finished job shows its stage timeline with cache hits, its status history and its whole log", async () => {
    const { page, csp } = await open(admin);
    await page.goto(`${serve.url}/ui/#/jobs/${built.id}`);
    await page.getByText("End of log.").waitFor();
    const log = (await page.locator("div.log").textContent()) ?? "";
    assert.equal(log.trim().split("\n").length, 200, "every line of the log");
    const bars = page.locator("svg.timeline rect");
    assert.equal(await bars.count(), 4);
    assert.equal(await page.locator("svg.timeline rect.cached").count(), 1, "the cache hit is marked");
    const widths = await bars.evaluateAll((els) => els.map((e) => Number(e.getAttribute("width"))));
    assert.ok(widths[1]! > widths[2]! && widths[2]! > widths[3]!, `bars follow the seconds: ${widths.join(", ")}`);
    assert.match(await page.locator("svg.timeline").getAttribute("aria-label") ?? "", /4 stages/);
    assert.match(await page.locator("table", { hasText: "Time in it" }).innerText(), /building_image\s+1 min 4 s/);
    await check(page, "job-finished");
    assert.deepEqual(csp, []);
    await page.context().close();
  });

  test("a customize session shows the SSH command with a copy button; End session asks the worker to package", async () => {
    const { page, csp } = await open(admin);
    await page.context().grantPermissions(["clipboard-read", "clipboard-write"]);
    await page.goto(`${serve.url}/ui/#/jobs/${session.id}`);
    await page.getByText("ssh -p 2222 root@10.1.2.3").waitFor();
    await page.getByRole("button", { name: "Copy SSH command" }).click();
    assert.equal(await page.evaluate(() => (globalThis as unknown as { navigator: { clipboard: { readText(): Promise<string> } } }).navigator.clipboard.readText()), "ssh -p 2222 root@10.1.2.3");
    assert.match(await page.locator(".session").innerText(), /SHA256:7bN3m2Yq0f1rA5cP9wXk4sT6uV8zD2eH1jL3nQ5oR7s/);
    await check(page, "job-session");
    // Wait for the response from before the click: a fast answer could come before a wait set up after it.
    const ended = page.waitForResponse((r) => r.url().endsWith(`/v3/jobs/${session.id}/end-session`));
    await page.getByRole("button", { name: "End session: complete" }).click();
    await ended;
    const after = await call<{ kiln: { session_end: string } }>("GET", `/v3/jobs/${session.id}`);
    assert.equal(after.kiln.session_end, "complete", "the API got the complete marker");
    assert.deepEqual(csp, []);
    await page.context().close();
  });

  test("public keys and service pages render and pass axe", async () => {
    const { page, csp } = await open(admin);
    await page.getByRole("link", { name: "Public keys" }).click();
    await page.getByRole("cell", { name: "ops", exact: true }).waitFor();
    await check(page, "keys");
    await page.getByRole("link", { name: "Service" }).click();
    await page.getByText("Jobs waiting for a worker").waitFor();
    await check(page, "service");
    await page.goto(`${serve.url}/ui/`);
    await page.getByRole("button", { name: "Log out" }).click();
    await page.getByLabel("API token").waitFor();
    await check(page, "login");
    assert.deepEqual(csp, []);
    await page.context().close();
  });

  test("remote build nodes: register one, see its status and why Kiln runs no jobs on it, delete it; the Service page names the catalog and store", async () => {
    const { page, csp } = await open(admin);
    await page.getByRole("link", { name: "Build nodes" }).click();
    await page.getByRole("heading", { name: "Remote build nodes" }).waitFor();
    await page.getByLabel(/Xname/).fill("x3000c0s1b0n0");
    await page.getByRole("button", { name: "Register node" }).click();
    const row = page.locator("tbody tr", { hasText: "x3000c0s1b0n0" });
    await row.waitFor();
    assert.match(await row.innerText(), /\bno\b/, "Kiln runs no jobs on it");
    assert.match(await page.locator("p.hint").innerText(), /its workers take jobs from the queue/);
    assert.deepEqual(await call<Array<{ xname: string }>>("GET", "/v3/remote-build-nodes"), [{ xname: "x3000c0s1b0n0" }]);
    await check(page, "nodes");
    await page.getByRole("button", { name: "Delete node x3000c0s1b0n0" }).click();
    await row.waitFor({ state: "detached" });
    assert.deepEqual(await call<unknown[]>("GET", "/v3/remote-build-nodes"), []);
    await page.getByRole("link", { name: "Service" }).click();
    await page.getByText("PGlite (embedded)").waitFor();
    const facts = await page.locator("dl.facts").innerText();
    assert.match(facts, new RegExp(`${path.join(dir, "data", "catalog")}`));
    assert.match(facts, new RegExp(`directory\\s+file://${path.join(dir, "data", "objects")}`));
    await check(page, "service-stores");
    assert.deepEqual(csp, []);
    await page.context().close();
  });

  test("a read-only token sees no write controls on any page", async () => {
    const { page, csp } = await open(reader);
    assert.match(await page.locator(".who").innerText(), /read-only/);
    const writes = /^(Delete|Undelete|Upload|New job|Build it|Set|Add key|Cancel job|End session|Remove|Start job|Register)/;
    const pages = ["images", `images/${seeded.id}`, `images/${verified.id}`, "jobs", `jobs/${session.id}`, `jobs/${built.id}`, "recipes", "keys", "deleted", "nodes", "service"];
    for (const p of pages) {
      await page.goto(`${serve.url}/ui/#/${p}`);
      await page.locator("main h1").waitFor();
      await page.waitForLoadState("networkidle");
      // Sort buttons in table headers only read (a column may be called "Deleted").
      const controls = [...(await page.locator("main button:not(.sort)").allInnerTexts()), ...(await page.locator("main a.button").allInnerTexts())];
      assert.deepEqual(controls.filter((c) => writes.test(c.trim())), [], `#/${p}`);
    }
    await page.goto(`${serve.url}/ui/#/jobs/${session.id}`);
    await page.getByText("ssh -p 2222 root@10.1.2.3").waitFor();
    assert.equal(await page.getByRole("button", { name: /End session/ }).count(), 0, "a reader sees the session, not its controls");
    await page.goto(`${serve.url}/ui/#/recipes/new`);
    await page.getByText("A read-only token cannot upload recipes.").waitFor();
    assert.deepEqual(csp, []);
    await page.context().close();
  });
});
