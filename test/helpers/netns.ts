/**
 * A small network of "machines" for fault tests: each machine is a network namespace with its own
 * address on one bridge (in a hub namespace of its own), and the test's own namespace is joined
 * to the bridge too, so the test reaches every machine. The addresses are a /24 of 10.77.0.0/16
 * that exists only inside these namespaces: nothing is routed anywhere else. `cut` takes a
 * machine off the network (its link goes down) and `reconnect` puts it back, as a pulled and
 * replugged cable would. Processes run on a machine through `ip netns exec` (see `prefix`).
 */
import { execFileSync } from "node:child_process";
import { randomBytes, randomInt } from "node:crypto";

export interface Machine {
  name: string;
  ns: string;
  address: string;
  /** argv prefix that runs a command on this machine. */
  prefix: string[];
}

function ip(...args: string[]): void {
  execFileSync("ip", args, { stdio: ["ignore", "ignore", "pipe"] });
}

export class TestNetwork {
  private constructor(
    private readonly id: string,
    readonly subnet: string,
    private readonly hub: string,
    private readonly machines: Map<string, Machine & { port: string }>,
    /** The test's own address on the network. */
    readonly hostAddress: string,
  ) {}

  static create(names: string[]): TestNetwork {
    const id = randomBytes(2).toString("hex");
    const net = `10.77.${randomInt(1, 255)}`;
    const hub = `kiln-${id}-hub`;
    const machines = new Map<string, Machine & { port: string }>();
    const network = new TestNetwork(id, `${net}.0/24`, hub, machines, `${net}.1`);
    try {
      ip("netns", "add", hub);
      ip("-n", hub, "link", "add", "br0", "type", "bridge");
      ip("-n", hub, "link", "set", "br0", "up");
      // The test's own namespace: interface names are at most 15 characters.
      ip("link", "add", `kt${id}`, "type", "veth", "peer", "name", "p0", "netns", hub);
      ip("addr", "add", `${net}.1/24`, "dev", `kt${id}`);
      ip("link", "set", `kt${id}`, "up");
      ip("-n", hub, "link", "set", "p0", "master", "br0", "up");
      names.forEach((name, i) => {
        const ns = `kiln-${id}-${name}`;
        const port = `p${i + 1}`;
        ip("netns", "add", ns);
        ip("-n", ns, "link", "set", "lo", "up");
        ip("link", "add", port, "netns", hub, "type", "veth", "peer", "name", "eth0", "netns", ns);
        const address = `${net}.${i + 2}`;
        ip("-n", ns, "addr", "add", `${address}/24`, "dev", "eth0");
        ip("-n", ns, "link", "set", "eth0", "up");
        ip("-n", hub, "link", "set", port, "master", "br0", "up");
        machines.set(name, { name, ns, address, port, prefix: ["ip", "netns", "exec", ns] });
      });
    } catch (e) {
      network.destroy();
      throw e;
    }
    return network;
  }

  machine(name: string): Machine {
    const m = this.machines.get(name);
    if (!m) throw new Error(`no machine ${name}`);
    return m;
  }

  /** Takes the machine off the network: its link on the bridge goes down. */
  cut(name: string): void {
    ip("-n", this.hub, "link", "set", this.machines.get(name)!.port, "down");
  }

  reconnect(name: string): void {
    ip("-n", this.hub, "link", "set", this.machines.get(name)!.port, "up");
  }

  /** Kills whatever still runs in the machines' namespaces and removes them and the links. */
  destroy(): void {
    for (const m of this.machines.values()) {
      try {
        const pids = execFileSync("ip", ["netns", "pids", m.ns], { encoding: "utf8" }).split("\n").filter(Boolean);
        for (const pid of pids) {
          try {
            process.kill(Number(pid), "SIGKILL");
          } catch {
            // gone
          }
        }
      } catch {
        // no such namespace
      }
      try {
        ip("netns", "del", m.ns);
      } catch {
        // not made
      }
    }
    try {
      ip("link", "del", `kt${this.id}`);
    } catch {
      // not made, or gone with the hub
    }
    try {
      ip("netns", "del", this.hub);
    } catch {
      // not made
    }
  }
}
