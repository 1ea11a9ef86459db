/**
 * A Kiln process killed with SIGKILL while it held a signer (kiln serve --streams-sign-key) leaves
 * the gpg-agent of its throwaway GnuPG home running, detached. The next signer opened on the
 * machine stops it and removes the home; a live process's home is left alone. Real gpg-agents.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { sweepDeadHomes } from "../../src/streams/sign.js";

function agentOf(home: string): string {
  return execFileSync("sh", ["-c", `pgrep -fa 'gpg-agent --homedi[r] ${home}' || true`], { encoding: "utf8" }).trim();
}

test("sign: the agent and home of a dead Kiln process are swept by the next signer; a live one's stay", async () => {
  const tmp = await mkdtemp("/tmp/kiln-sweep-");
  try {
    const dead = spawnSync("true").pid!; // a pid that has exited
    const homes: Record<string, string> = { dead: path.join(tmp, "kiln-gpg-dead"), live: path.join(tmp, "kiln-gpg-live") };
    for (const [who, home] of Object.entries(homes)) {
      await mkdir(home, { mode: 0o700 });
      await writeFile(path.join(home, "kiln-owner"), `${who === "dead" ? dead : process.pid}\n`);
      execFileSync("gpgconf", ["--homedir", home, "--launch", "gpg-agent"]);
      assert.notEqual(agentOf(home), "", `an agent runs for ${who}`);
    }
    assert.equal(await sweepDeadHomes(tmp), 1);
    assert.equal(agentOf(homes.dead!), "", "the dead process's agent is stopped");
    assert.equal(existsSync(homes.dead!), false, "and its home removed");
    assert.notEqual(agentOf(homes.live!), "", "the live process's agent still runs");
    execFileSync("gpgconf", ["--homedir", homes.live!, "--kill", "all"]);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
});
