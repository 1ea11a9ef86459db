import { test } from "node:test";
import assert from "node:assert/strict";
import { JobLog } from "../../src/jobs/job-log.js";

/** A catalog whose log table is away while `down` is true, as PostgreSQL is during a restart. */
function flakyCatalog() {
  const stored: string[] = [];
  const state = { down: false, calls: 0 };
  return {
    state,
    stored,
    text: () => stored.join(""),
    appendLog: async (_id: string, text: string) => {
      state.calls++;
      if (state.down) throw new Error("connect ECONNREFUSED 127.0.0.1:5432");
      stored.push(text);
    },
  };
}

const fast = { keepBytes: 1 << 20, retryMinMs: 20, retryMaxMs: 80 };
const bodies = (text: string) => text.split("\n").filter(Boolean).map((l) => l.slice(9));

test("lines written while the catalog is unreachable are stored, in order, once it is back", async () => {
  const cat = flakyCatalog();
  const log = new JobLog(cat, "job-1", fast);
  log.line("before");
  assert.equal(await log.flush(), true);
  cat.state.down = true;
  log.line("during 1");
  log.line("during 2");
  assert.equal(await log.flush(), false, "a write to an unreachable catalog reports the lines as unsent");
  log.line("during 3");
  await new Promise((r) => setTimeout(r, 100));
  assert.ok(cat.state.calls >= 3, "it keeps retrying in the background");
  cat.state.down = false;
  log.line("after");
  assert.equal(await log.settle(2_000), true);
  assert.deepEqual(bodies(cat.text()), ["before", "during 1", "during 2", "during 3", "after"]);
});

test("settle gives up after its time and keeps the lines for a later write", async () => {
  const cat = flakyCatalog();
  cat.state.down = true;
  const log = new JobLog(cat, "job-2", fast);
  log.line("kept");
  const t0 = Date.now();
  assert.equal(await log.settle(200), false);
  assert.ok(Date.now() - t0 < 1_000, "bounded by its time");
  cat.state.down = false;
  assert.equal(await log.flush(), true);
  assert.deepEqual(bodies(cat.text()), ["kept"]);
});

test("past its buffer the oldest lines go and the log says how many bytes were lost", async () => {
  const cat = flakyCatalog();
  cat.state.down = true;
  const log = new JobLog(cat, "job-3", { ...fast, keepBytes: 4096 });
  await log.flush();
  for (let i = 0; i < 500; i++) log.line(`line ${i}`);
  cat.state.down = false;
  assert.equal(await log.settle(2_000), true);
  const lines = bodies(cat.text());
  assert.match(lines[0]!, /^… \d+ bytes of this log were lost while the catalog was unreachable$/);
  assert.equal(lines.at(-1), "line 499", "the newest lines are kept");
  assert.ok(lines.length < 500 && lines.length > 50);
  const numbers = lines.slice(1).map((l) => Number(l.split(" ")[1]));
  assert.deepEqual(numbers, numbers.slice().sort((a, b) => a - b), "still in order");
});
