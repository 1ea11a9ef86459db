/**
 * bench/ui: the web console's speed in headless chromium (Debian's, driven by playwright-core)
 * against a real `kiln serve` (PGlite, no worker), with a catalog seeded directly before the
 * service opens it:
 *
 *  1. the images page with --records image records (default 10,000): time from navigation until
 *     the first page of rows is on screen, then a sort by name and a filter, each until the
 *     table shows the result. Target: interactive in under 1 s.
 *  2. a finished job whose log has --lines lines (default 100,000), streamed into the job page
 *     while the reader scrolls it: frame times (requestAnimationFrame intervals) from navigation
 *     until the end of the log. Target: no frozen page (no frame over 200 ms; p95 under 50 ms).
 *
 *   node dist/bench/ui/run.js [--records 10000] [--lines 100000] [--runs 3]
 */
import { randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { chromium, type Page } from "playwright-core";
import { Catalog } from "../../src/catalog/catalog.js";
import { imsTime } from "../../src/catalog/records.js";
import { createToken, startServe } from "../../test/helpers/service-process.js";
import { appendLogLines, jobRecord } from "../../test/helpers/ui-seed.js";

const { values } = parseArgs({ options: { records: { type: "string", default: "10000" }, lines: { type: "string", default: "100000" }, runs: { type: "string", default: "3" } } });
const RECORDS = Number(values.records);
const LINES = Number(values.lines);
const RUNS = Number(values.runs);

async function seedImages(catalog: Catalog, n: number): Promise<void> {
  for (let done = 0; done < n; ) {
    const batch = Math.min(1000, n - done);
    const rows: string[] = [];
    const params: unknown[] = [];
    for (let i = 0; i < batch; i++) {
      const id = randomUUID();
      const k = done + i;
      // As jobs publish them: a size, flavors and verify boots (one in 50 not verified, one in 200 failed).
      const verify = k % 50 === 0 ? [] : [{ flavor: "generic", target: "pxe", ok: k % 200 !== 1, seconds: 40 + (k % 30), log: null }];
      const kiln = { job_id: null, source_image_id: null, flavors: [{ flavor: k % 3 ? "generic" : "cloud", kpackage: "linux-image-amd64", kernel_version: "6.1.0-28-amd64" }], package_diff: null, label: "candidate", size: 200_000_000 + ((k * 7919) % 500) * 1_000_000, verify };
      const doc = { id, created: imsTime(new Date(Date.now() - k * 60_000)), name: `image-${k}`, link: null, arch: k % 5 ? "x86_64" : "aarch64", metadata: { built_by: "bench" }, kiln };
      params.push(id, JSON.stringify(doc));
      rows.push(`($${params.length - 1}, $${params.length})`);
    }
    await catalog.sql.query(`INSERT INTO images (id, doc) VALUES ${rows.join(", ")}`, params);
    done += batch;
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** ms from the page's navigation start until `done` holds, measured in the page. */
async function pageMs(page: Page, until: () => Promise<unknown>): Promise<number> {
  await until();
  return page.evaluate(() => performance.now());
}

async function main(): Promise<void> {
  const dir = await mkdtemp("/var/tmp/kiln-bench-ui-");
  const dataDir = path.join(dir, "data");
  const catalog = await Catalog.open(undefined, dataDir);
  await seedImages(catalog, RECORDS);
  const job = jobRecord({ image_root_archive_name: "long-log" });
  await catalog.insert("jobs", job);
  await appendLogLines(catalog, job.id, LINES);
  await catalog.close();
  const token = await createToken(dataDir, "read-only");
  const serve = await startServe(["--data-dir", dataDir, "--no-worker"]);
  const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox"] });
  const rows: string[][] = [];
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    // The tab's token, as the login page leaves it; and a frame-time recorder. Init scripts come
    // through the DevTools protocol: the page's CSP does not apply to them.
    // (Strings: they run in the page, which this Node-typed file has no DOM types for.)
    await context.addInitScript(`
      sessionStorage.setItem("kiln.token", ${JSON.stringify(token)});
      window.__frames = [];
      let last = performance.now();
      const tick = (now) => { window.__frames.push(now - last); last = now; requestAnimationFrame(tick); };
      requestAnimationFrame(tick);
    `);
    const page = await context.newPage();

    const shown: number[] = [];
    const sorted: number[] = [];
    const filtered: number[] = [];
    const sizeSorted: number[] = [];
    const verifyFiltered: number[] = [];
    for (let r = 0; r < RUNS; r++) {
      await page.goto("about:blank");
      await page.goto(`${serve.url}/ui/#/images`);
      shown.push(await pageMs(page, () => page.getByText(`Page 1 of ${Math.ceil(RECORDS / 50)} (${RECORDS} rows)`).waitFor({ timeout: 60_000 })));
      let t = await page.evaluate(() => performance.now());
      await page.getByRole("button", { name: "Name" }).click();
      await page.locator("tbody tr td:first-child", { hasText: /^image-0$/ }).waitFor();
      sorted.push((await page.evaluate(() => performance.now())) - t);
      t = await page.evaluate(() => performance.now());
      await page.getByRole("button", { name: "Size" }).click();
      await page.locator("th[aria-sort=ascending]", { hasText: "Size" }).waitFor();
      sizeSorted.push((await page.evaluate(() => performance.now())) - t);
      t = await page.evaluate(() => performance.now());
      await page.getByLabel("Verify").selectOption("failed");
      await page.getByText(`(${Math.floor((RECORDS + 198) / 200)} rows)`).waitFor();
      verifyFiltered.push((await page.evaluate(() => performance.now())) - t);
      await page.getByLabel("Verify").selectOption("");
      t = await page.evaluate(() => performance.now());
      await page.getByLabel("Name or id").fill(`image-${RECORDS - 1}`);
      await page.getByText("(1 rows)").waitFor();
      filtered.push((await page.evaluate(() => performance.now())) - t);
    }
    rows.push([`images page, ${RECORDS} records: first page shown after navigation`, `${median(shown).toFixed(0)} ms`, `runs ${shown.map((x) => x.toFixed(0)).join(", ")}`, "< 1000 ms"]);
    rows.push(["  sort by name (click to table updated)", `${median(sorted).toFixed(0)} ms`, `runs ${sorted.map((x) => x.toFixed(0)).join(", ")}`, ""]);
    rows.push(["  sort by size (click to table updated)", `${median(sizeSorted).toFixed(0)} ms`, `runs ${sizeSorted.map((x) => x.toFixed(0)).join(", ")}`, ""]);
    rows.push(["  filter by verify status failed (select to table updated)", `${median(verifyFiltered).toFixed(0)} ms`, `runs ${verifyFiltered.map((x) => x.toFixed(0)).join(", ")}`, ""]);
    rows.push(["  filter by name (input to table updated)", `${median(filtered).toFixed(0)} ms`, `runs ${filtered.map((x) => x.toFixed(0)).join(", ")}`, ""]);

    const served = (await (await fetch(`${serve.url}/v3/jobs/${job.id}/log?follow=false`, { headers: { authorization: `Bearer ${token}` } })).text()).split("\n").length - 1;
    await page.goto("about:blank");
    await page.goto(`${serve.url}/ui/#/jobs/${job.id}`);
    const log = page.locator("div.log");
    await log.waitFor();
    const started = await page.evaluate(() => performance.now());
    // Scroll the log up and down while it streams, as a reader would.
    let done = false;
    // A cheap check: a text selector would read the whole log's text on every poll and stall the page itself.
    const end = page.waitForFunction(() => (globalThis as unknown as { document: { querySelector(s: string): { textContent: string } | null } }).document.querySelector("p.hint[aria-live]")?.textContent === "End of log.", undefined, { timeout: 300_000, polling: 250 }).then(() => (done = true));
    await log.hover();
    for (let i = 0; !done; i++) {
      await page.mouse.wheel(0, i % 10 < 5 ? -400 : 400);
      await page.waitForTimeout(50);
    }
    await end;
    const result = (await page.evaluate(`({
      frames: window.__frames.slice(1),
      lines: document.querySelector("div.log").textContent.split("\\n").length - 1,
      ms: performance.now() - ${started},
    })`)) as { frames: number[]; lines: number; ms: number };
    const f = [...result.frames].sort((a, b) => a - b);
    const p = (q: number) => f[Math.min(f.length - 1, Math.floor(q * f.length))]!;
    rows.push([`job log, ${LINES} lines streamed while scrolling`, `${(result.ms / 1000).toFixed(1)} s`, `${result.lines} lines shown of ${served} served`, ""]);
    rows.push(["  frame times (rAF interval) p50 / p95 / p99 / max", `${p(0.5).toFixed(0)} / ${p(0.95).toFixed(0)} / ${p(0.99).toFixed(0)} / ${f.at(-1)!.toFixed(0)} ms`, `${f.length} frames, ${f.filter((x) => x > 50).length} over 50 ms`, "max < 200 ms, p95 < 50 ms"]);
  } finally {
    await browser.close();
    await serve.stop();
    await rm(dir, { recursive: true, force: true });
  }
  process.stdout.write(`bench/ui on ${os.cpus().length} cores, load ${os.loadavg()[0]!.toFixed(1)}\n\n| measure | figure | detail | target |\n|---|---|---|---|\n`);
  for (const r of rows) process.stdout.write(`| ${r.join(" | ")} |\n`);
}

await main();
