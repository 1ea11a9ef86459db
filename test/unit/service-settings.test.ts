import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { Command } from "commander";
import { addSettingOptions, COMMAND_SETTINGS, parseListen, resolveSettings, SETTINGS, settingsTable } from "../../src/config/settings.js";
import { KilnError } from "../../src/errors.js";

test("flag beats environment beats default; defaults under --data-dir follow it", () => {
  const s = resolveSettings(COMMAND_SETTINGS.serve, { listen: "0.0.0.0:9000", dataDir: "/srv/kiln" }, { KILN_LISTEN: "127.0.0.1:1", KILN_CONCURRENCY: "3" });
  assert.deepEqual(s.listen, { host: "0.0.0.0", port: 9000 });
  assert.equal(s.concurrency, 3);
  assert.equal(s.store, "file:///srv/kiln/objects");
  assert.equal(s.workDir, "/srv/kiln/work");
  assert.equal(s.database, undefined);
  assert.equal(s.worker, true);
  assert.equal(resolveSettings(["worker"], { worker: false }, {}).worker, false, "--no-worker");
  assert.equal(resolveSettings(["worker"], {}, { KILN_WORKER: "false" }).worker, false);
});

test("--sign-key: kiln serve signs with the streams key unless told otherwise; kiln worker has no default; \"\" signs nothing", () => {
  assert.equal(resolveSettings(COMMAND_SETTINGS.serve, { streamsSignKey: "/k/stream.asc" }, {}).signKey, "/k/stream.asc");
  assert.equal(resolveSettings(COMMAND_SETTINGS.serve, {}, { KILN_STREAMS_SIGN_KEY: "/k/stream.asc" }).signKey, "/k/stream.asc", "from the streams key's environment variable too");
  assert.equal(resolveSettings(COMMAND_SETTINGS.serve, { streamsSignKey: "/k/stream.asc", signKey: "/k/images.asc" }, {}).signKey, "/k/images.asc");
  assert.equal(resolveSettings(COMMAND_SETTINGS.serve, { streamsSignKey: "/k/stream.asc" }, { KILN_SIGN_KEY: "" }).signKey, undefined, "an empty KILN_SIGN_KEY: unsigned");
  assert.equal(resolveSettings(COMMAND_SETTINGS.serve, {}, {}).signKey, undefined);
  assert.equal(resolveSettings(COMMAND_SETTINGS.worker, {}, { KILN_STREAMS_SIGN_KEY: "/k/stream.asc" }).signKey, undefined, "kiln worker takes no streams key");
  assert.equal(resolveSettings(COMMAND_SETTINGS.worker, {}, { KILN_SIGN_KEY: "/k/images.asc" }).signKey, "/k/images.asc");
});

test("every bad setting is reported at once, naming the flag and where the value came from", () => {
  assert.throws(
    () => resolveSettings(COMMAND_SETTINGS.serve, { listen: "nowhere", tlsCert: "c.pem" }, { KILN_CONCURRENCY: "0", KILN_VERIFY: "sometimes" }),
    (e: unknown) => {
      assert.ok(e instanceof KilnError);
      assert.equal(e.code, "SERVICE_CONFIG");
      assert.match(e.message, /--listen "nowhere" \(--listen\): use HOST:PORT/);
      assert.match(e.message, /--concurrency "0" \(env KILN_CONCURRENCY\): use a number of jobs/);
      assert.match(e.message, /--verify "sometimes" \(env KILN_VERIFY\): use recipe, always or never/);
      assert.match(e.message, /--tls-cert needs --tls-key/);
      assert.equal(e.problems.length, 4);
      return true;
    },
  );
});

test("listen addresses and sizes", () => {
  assert.deepEqual(parseListen("[::1]:8080"), { host: "::1", port: 8080 });
  assert.deepEqual(parseListen("localhost:0"), { host: "localhost", port: 0 });
  assert.throws(() => parseListen("8080"));
  assert.throws(() => parseListen("h:70000"));
  assert.equal(SETTINGS.maxRecipeSize.parse("64M"), 64 * 2 ** 20);
  assert.throws(() => SETTINGS.maxRecipeSize.parse("lots"), { message: "use a size such as 64M, 1G or 1048576" });
});

test("the settings table builds the commands' options and --help", () => {
  const cmd = addSettingOptions(new Command("serve"), COMMAND_SETTINGS.serve);
  const help = cmd.helpInformation().replace(/\s+/g, " ");
  for (const flag of ["--listen <host:port>", "--data-dir <dir>", "--database <url>", "--no-worker", "--tls-cert <file>"]) assert.ok(help.includes(flag), flag);
  assert.match(help, /\[env KILN_DATA_DIR\] \(default \/var\/lib\/kiln\)/);
});

test("docs/service.md shows the settings table as the code declares it", async () => {
  const doc = await readFile(new URL("../../../docs/service.md", import.meta.url), "utf8");
  const m = /<!-- settings:begin[^>]*-->\n([\s\S]*?)\n<!-- settings:end -->/.exec(doc);
  assert.ok(m, "markers present");
  assert.equal(m[1], settingsTable(), "regenerate with: node -e 'import(\"./dist/src/config/settings.js\").then(m => console.log(m.settingsTable()))'");
});
