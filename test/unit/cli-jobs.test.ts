/** --jobs on the command line: a bad value exits 2 naming the flag and what it takes, before anything runs. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { parseJobs } from "../../src/cli/commands/build.js";
import { runKiln } from "../helpers/kiln.js";

test("parseJobs: whole numbers from 1; not given stays undefined (the host decides)", () => {
  assert.equal(parseJobs(undefined), undefined);
  assert.equal(parseJobs("1"), 1);
  assert.equal(parseJobs("12"), 12);
  for (const bad of ["0", "-1", "1.5", "two", "", "1e3", "99999"]) assert.throws(() => parseJobs(bad), /--jobs .*a whole number from 1/, bad);
});

test("kiln build --jobs 0 and kiln verify --jobs x: exit 2 with the flag named, nothing written", async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), "kiln-jobs-"));
  try {
    const b = await runKiln(["build", "examples/minimal.yaml", "--jobs", "0", "--out", path.join(dir, "out"), "--cache-dir", path.join(dir, "cache")]);
    assert.equal(b.code, 2, b.stderr);
    assert.match(b.stderr, /^kiln: error: --jobs "0": give how many stages may run at once, a whole number from 1, e\.g\. --jobs 2$/m);
    assert.match(b.stderr, /^kiln: hint: leave it out to use one per core/m);
    const v = await runKiln(["verify", dir, "--jobs", "x"]);
    assert.equal(v.code, 2, v.stderr);
    assert.match(v.stderr, /^kiln: error: --jobs "x"/m);
    assert.deepEqual(await readdir(dir), [], "nothing written");
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
