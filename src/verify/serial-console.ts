/**
 * The keyboard side of a guest's serial console: qemu serves the console on a unix socket
 * (`-chardev socket,…,server=on,wait=off,logfile=<serial log>`), the log file keeps everything the
 * guest writes, and this client types into it. What arrives on the socket is read and dropped,
 * so the guest never blocks on a full socket (the log file has it all).
 */
import { createConnection, type Socket } from "node:net";
import { setTimeout as delay } from "node:timers/promises";
import type { Releasable } from "../host/scope.js";

export class SerialConsole implements Releasable {
  private constructor(private readonly socket: Socket) {}

  /** Connects once qemu has made the socket (it does so right after it starts). */
  static async connect(socketPath: string, signal?: AbortSignal, waitMs = 15_000): Promise<SerialConsole> {
    const until = Date.now() + waitMs;
    for (;;) {
      try {
        const socket = await new Promise<Socket>((resolve, reject) => {
          const s = createConnection(socketPath);
          s.once("connect", () => resolve(s));
          s.once("error", reject);
        });
        socket.on("data", () => {}); // drop: the log file has the output
        socket.on("error", () => {}); // qemu going away ends the boot, not the build
        return new SerialConsole(socket);
      } catch (e) {
        if (Date.now() > until || signal?.aborted) throw e;
        await delay(100);
      }
    }
  }

  /** Types `text` one character at a time: firmware reads a 16-byte UART FIFO and drops what overflows. */
  async type(text: string, perCharMs = 20): Promise<void> {
    for (const ch of text) {
      await new Promise<void>((resolve) => this.socket.write(ch, () => resolve()));
      await delay(perCharMs);
    }
  }

  async release(): Promise<void> {
    this.socket.destroy();
  }
}
