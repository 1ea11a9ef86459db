/**
 * What Kiln can truthfully say about an IMS remote build node.
 *
 * IMS computes a node's status live (`models/remote_build_nodes.py` getStatus): SSH as root with
 * its ECDSA key, `uname -i` for nodeArch, `which podman`, then count `/tmp/ims_*` for
 * numCurrentJobs; ableToRunJobs is true once SSH, arch and podman check out, and IMS then runs
 * jobs there in podman containers. Kiln has no such nodes of its own: its build capacity is
 * `kiln worker` processes that take jobs from the queue. So Kiln never runs a job on a registered
 * node (ableToRunJobs is always false, with the reason in `kiln.reason`), holds no key to log in
 * with, and checks only what it can check without one: whether an SSH server on port 22 of the
 * xname sends its banner, within a short timeout. Fields it cannot know keep IMS' own defaults
 * ("Unknown", -1).
 */
import net from "node:net";
import type { RemoteBuildNodeStatus } from "../catalog/records.js";

export const SSH_PORT = 22;
export const PROBE_TIMEOUT_MS = 2000;

export const NOT_A_BUILD_NODE = "Kiln runs no jobs on remote build nodes: its workers take jobs from the queue. To build on this node, run `kiln worker --database URL --store URL` on it.";

const LABEL = "[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?";
const HOSTNAME = new RegExp(`^(?=.{1,253}$)${LABEL}(?:\\.${LABEL})*$`);

/** Whether `xname` can be used as a host to connect to (a DNS name or an IP address). */
export function isHostName(xname: string): boolean {
  return net.isIP(xname) !== 0 || HOSTNAME.test(xname);
}

/**
 * Connects to `host:port` and reads the server's first line. An SSH server speaks first
 * (RFC 4253 §4.2: "SSH-2.0-…"), so a banner proves one answers; an accepted connection alone
 * does not (a firewall or proxy may accept anything). Gives up after `timeoutMs`.
 */
export function probeSsh(host: string, port: number, timeoutMs: number): Promise<{ ok: true; banner: string } | { ok: false; error: string }> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    let connected = false;
    let received = "";
    const done = (r: { ok: true; banner: string } | { ok: false; error: string }) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(r);
    };
    const silent = () => `TCP port ${port} accepted the connection but no SSH server answered`;
    const timer = setTimeout(() => done({ ok: false, error: connected ? `${silent()} within ${timeoutMs / 1000} s` : `no answer within ${timeoutMs / 1000} s` }), timeoutMs);
    socket.once("connect", () => (connected = true));
    socket.on("data", (d: Buffer) => {
      received += d.toString("latin1");
      // Servers may send other lines before the identification string (RFC 4253 §4.2).
      const ssh = received.split("\n").find((l) => l.startsWith("SSH-"));
      if (ssh && received.includes("\n", received.indexOf(ssh))) done({ ok: true, banner: ssh.trim().slice(0, 120) });
      else if (received.length > 8192) done({ ok: false, error: `TCP port ${port} answered, but not as an SSH server` });
    });
    socket.once("end", () => done({ ok: false, error: connected ? `${silent()} (closed)` : "connection closed" }));
    socket.once("error", (e) => done({ ok: false, error: e.message }));
  });
}

/** The status of one registered node, as IMS' RemoteBuildNodeStatus plus `kiln.reason`. */
export async function remoteBuildNodeStatus(xname: string, opts: { port?: number; timeoutMs?: number } = {}): Promise<RemoteBuildNodeStatus> {
  const port = opts.port ?? SSH_PORT;
  let sshStatus: string;
  if (!isHostName(xname)) {
    sshStatus = `Unable to connect to node. Error: ${JSON.stringify(xname)} is not a host name or IP address`;
  } else {
    const r = await probeSsh(xname, port, opts.timeoutMs ?? PROBE_TIMEOUT_MS);
    // IMS' words for a failed connection, so scripts that look for them still work.
    sshStatus = r.ok ? `SSH server answered (${r.banner}); login not attempted (Kiln holds no remote build node key)` : `Unable to connect to node. Error: ${r.error}`;
  }
  return {
    xname,
    sshStatus,
    podmanStatus: "Not checked: Kiln starts no podman containers on remote build nodes",
    nodeArch: "Unknown",
    numCurrentJobs: -1,
    ableToRunJobs: false,
    kiln: { reason: NOT_A_BUILD_NODE },
  };
}
