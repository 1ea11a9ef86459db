// Retention with an injected clock: --keep N prunes metadata at once; files nobody references are
// deleted only after the grace period; promotion shares files between labels.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { checkStream, openSource } from "../../src/streams/check.js";
import type { ProductsFile } from "../../src/streams/format.js";
import { promote } from "../../src/streams/promote.js";
import { publish } from "../../src/streams/publish.js";
import { parseDuration } from "../../src/streams/retention.js";
import { fakeOut } from "../helpers/streams.js";

const exists = async (p: string) => (await stat(p).catch(() => undefined)) !== undefined;
const DAY = 86400_000;

describe("stream retention and promotion", () => {
  let dir: string;
  let stream: string;
  const t0 = new Date("2025-03-01T10:00:00Z");
  const at = (ms: number) => new Date(t0.getTime() + ms);
  const naming = { prefix: "org.kiln" };
  const pub = (seed: string, now: Date) => publish([path.join(dir, `out-${seed}`)], { to: stream, label: "candidate", naming, keep: 2, graceSeconds: 3 * 86400, now });
  const products = async (label = "candidate") => JSON.parse(await readFile(path.join(stream, `streams/v1/org.kiln:${label}:v3:download.json`), "utf8")) as ProductsFile;

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "kiln-streams-"));
    stream = path.join(dir, "stream");
    for (const s of ["1", "2", "3", "4"]) await fakeOut(path.join(dir, `out-${s}`), { seed: s });
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test("keeps N versions per product; the dropped version's files stay for the grace period, then go", async () => {
    await pub("1", t0);
    await pub("2", at(DAY));
    await writeFile(path.join(stream, "gpg.key"), "an operator's file\n");
    const r = await pub("3", at(2 * DAY));
    assert.deepEqual(r.pruned.map((p) => p.version), ["20250301", "20250301"], "both flavors' oldest version");
    assert.deepEqual(Object.keys((await products()).products["org.kiln.candidate:v3:boot:bookworm:amd64:generic"]!.versions), ["20250302", "20250303"]);
    const old = path.join(stream, "bookworm/amd64/20250301/squashfs");
    assert.ok(await exists(old), "still there: a client may have read the old products file");
    assert.equal(r.orphans.orphaned.length, 8, "squashfs, manifest and 3 files per flavor");
    assert.deepEqual((await checkStream(openSource(stream))).violations, []);

    // 3 days minus a second after it was orphaned: still there.
    const r2 = await pub("4", at(2 * DAY + 3 * DAY - 1000));
    assert.equal(r2.orphans.reaped.length, 0);
    assert.ok(await exists(old));
    // 20250302 was dropped just now: its grace period starts now.
    assert.equal(r2.orphans.orphaned.length, 8);

    // Past the grace period of the first batch (an unchanged promote is enough to run the sweep).
    const r3 = await promote({ stream, from: "candidate", to: "stable", naming, graceSeconds: 3 * 86400, now: at(5 * DAY) });
    assert.equal(r3.orphans.reaped.length, 8);
    assert.ok(!(await exists(old)));
    assert.ok(!(await exists(path.join(stream, "bookworm/amd64/20250301"))), "empty folders go too");
    assert.ok(await exists(path.join(stream, "bookworm/amd64/20250302/squashfs")), "the second batch waits out its own grace period");
    assert.ok(await exists(path.join(stream, "gpg.key")), "files outside Kiln's item folders are not Kiln's to delete");
    assert.deepEqual((await checkStream(openSource(stream))).violations, []);
  });

  test("promote copies the newest version to stable with the label rewritten, sharing the files", async () => {
    const stable = await products("stable");
    const names = Object.keys(stable.products).sort();
    assert.deepEqual(names, ["org.kiln.stable:v3:boot:bookworm:amd64:generic", "org.kiln.stable:v3:boot:bookworm:amd64:generic-cloud"]);
    const p = stable.products[names[0]!]!;
    assert.equal(p.label, "stable");
    assert.deepEqual(Object.keys(p.versions), ["20250306"]);
    const cand = (await products()).products["org.kiln.candidate:v3:boot:bookworm:amd64:generic"]!;
    assert.deepEqual(p.versions["20250306"], cand.versions["20250306"]);
    const index = JSON.parse(await readFile(path.join(stream, "streams/v1/index.json"), "utf8")) as { index: Record<string, unknown> };
    assert.deepEqual(Object.keys(index.index).sort(), ["org.kiln:candidate:v3:download", "org.kiln:stable:v3:download"]);

    // Dropping a candidate version that stable still uses orphans nothing.
    await pub("1", at(6 * DAY));
    await pub("2", at(7 * DAY));
    assert.ok(!Object.keys((await products()).products["org.kiln.candidate:v3:boot:bookworm:amd64:generic"]!.versions).includes("20250306"));
    const r = await promote({ stream, from: "candidate", to: "stable", naming, graceSeconds: 0, now: at(30 * DAY), keep: 5 });
    assert.ok(await exists(path.join(stream, "bookworm/amd64/20250306/squashfs")), "still referenced by stable");
    assert.ok(r.orphans.reaped.every((f) => !f.startsWith("bookworm/amd64/20250306/")));
    assert.deepEqual((await checkStream(openSource(stream))).violations, []);
  });

  test("durations", () => {
    assert.equal(parseDuration("3d"), 259200);
    assert.equal(parseDuration("12h"), 43200);
    assert.equal(parseDuration("0"), 0);
    assert.equal(parseDuration("soon"), undefined);
  });
});
