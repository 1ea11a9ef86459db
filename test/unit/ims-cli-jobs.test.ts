/**
 * `kiln ims jobs create` (the real CLI process) against a server that records what it is sent:
 * the ssh_containers flags must reach the service as `cray ims` sends them.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { runKiln } from "../helpers/kiln.js";

let server: Server;
let url: string;
const bodies: unknown[] = [];
before(async () => {
  server = createServer((req, res) => {
    let text = "";
    req.on("data", (d: Buffer) => (text += d.toString()));
    req.on("end", () => {
      bodies.push(JSON.parse(text));
      res.writeHead(201, { "content-type": "application/json" }).end(JSON.stringify({ id: "6a6b2d4e-2f5c-4a9b-9b1e-0c6f7b0e8d11" }));
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(() => new Promise<void>((r) => server.close(() => r())));

const base = ["ims", "jobs", "create", "--job-type", "customize", "--artifact-id", "6a6b2d4e-2f5c-4a9b-9b1e-0c6f7b0e8d11", "--public-key-id", "6a6b2d4e-2f5c-4a9b-9b1e-0c6f7b0e8d12", "--image-root-archive-name", "x", "--json"];

async function sent(extra: string[]): Promise<Record<string, unknown>> {
  const r = await runKiln([...base, ...extra], { env: { KILN_URL: url, KILN_TOKEN: "t" } });
  assert.equal(r.code, 0, r.stderr);
  return bodies.at(-1) as Record<string, unknown>;
}

test("kiln ims jobs create --ssh-containers-jail true alone sends [{jail: true}] (it used to be dropped)", async () => {
  assert.deepEqual((await sent(["--ssh-containers-jail", "true"])).ssh_containers, [{ jail: true }]);
});

test("kiln ims jobs create: name alone, name and jail, neither", async () => {
  assert.deepEqual((await sent(["--ssh-containers-name", "c"])).ssh_containers, [{ name: "c" }]);
  assert.deepEqual((await sent(["--ssh-containers-name", "c", "--ssh-containers-jail", "false"])).ssh_containers, [{ name: "c", jail: false }]);
  assert.equal("ssh_containers" in (await sent([])), false);
  const bad = await runKiln([...base, "--ssh-containers-jail", "maybe"], { env: { KILN_URL: url, KILN_TOKEN: "t" } });
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--ssh-containers-jail "maybe": use true or false/);
});
