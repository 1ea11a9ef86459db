/**
 * A remote build node's status says what a real connection finds, never more: an SSH server that
 * sends its banner, a port that accepts but stays silent (a proxy or firewall may accept anything),
 * a closed port, a name that does not resolve. Kiln never runs jobs there: ableToRunJobs is false.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { isHostName, remoteBuildNodeStatus } from "../../src/jobs/remote-build-node-status.js";

const servers: net.Server[] = [];
after(() => {
  for (const s of servers) s.close();
});

async function listen(onConnection: (c: net.Socket) => void): Promise<number> {
  const server = net.createServer(onConnection);
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return (server.address() as net.AddressInfo).port;
}

test("an SSH server that sends its banner is reported as answering; no login is attempted", async () => {
  let bytesFromKiln = 0;
  const port = await listen((c) => {
    c.on("data", (d: Buffer) => (bytesFromKiln += d.length));
    c.write("some preamble\r\nSSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n");
  });
  const s = await remoteBuildNodeStatus("127.0.0.1", { port });
  assert.equal(s.sshStatus, "SSH server answered (SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3); login not attempted (Kiln holds no remote build node key)");
  assert.equal(s.ableToRunJobs, false);
  assert.equal(s.numCurrentJobs, -1);
  assert.equal(s.nodeArch, "Unknown");
  assert.match(s.kiln.reason, /kiln worker/);
  assert.equal(bytesFromKiln, 0, "Kiln sends nothing: it does not even start the SSH handshake");
});

test("a port that accepts but sends no banner is not an SSH server", async () => {
  const port = await listen(() => {});
  const t0 = Date.now();
  const s = await remoteBuildNodeStatus("127.0.0.1", { port, timeoutMs: 300 });
  assert.equal(s.sshStatus, `Unable to connect to node. Error: TCP port ${port} accepted the connection but no SSH server answered within 0.3 s`);
  assert.ok(Date.now() - t0 < 2000);
  const closing = await listen((c) => c.end("HTTP/1.1 400 Bad Request\r\n\r\n"));
  assert.match((await remoteBuildNodeStatus("127.0.0.1", { port: closing, timeoutMs: 1000 })).sshStatus, /^Unable to connect to node\. Error: TCP port \d+ accepted the connection but no SSH server answered \(closed\)$/);
});

test("a closed port, an unknown name and a non-host xname are unreachable, with IMS' wording", async () => {
  const port = await listen(() => {});
  servers.pop()!.close();
  await new Promise((r) => setTimeout(r, 50));
  assert.match((await remoteBuildNodeStatus("127.0.0.1", { port })).sshStatus, /^Unable to connect to node\. Error: connect ECONNREFUSED 127\.0\.0\.1:\d+$/);
  assert.match((await remoteBuildNodeStatus("x3000c0s1b0n0.invalid", { timeoutMs: 3000 })).sshStatus, /^Unable to connect to node\. Error: (getaddrinfo \w+ x3000c0s1b0n0\.invalid|no answer within 3 s)$/);
  const bad = await remoteBuildNodeStatus("x1; rm -rf /");
  assert.equal(bad.sshStatus, 'Unable to connect to node. Error: "x1; rm -rf /" is not a host name or IP address');
  assert.ok(isHostName("x3000c1s10b1n0") && isHostName("10.1.2.3") && isHostName("::1") && isHostName("node-1.example.com"));
  assert.ok(!isHostName("") && !isHostName("-x") && !isHostName("a b") && !isHostName("a..b"));
});
