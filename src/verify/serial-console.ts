/**
 * The keyboard side of a guest's serial console: qemu serves the console on a unix socket
 * (`-chardev socket,…,server=on,wait=off,logfile=<serial log>`), the log file keeps everything the
 * guest writes, and this client types into it. What arrives on the socket is read and dropped,
 * so the guest never blocks on a full socket (the log file has it all).
 */
import { createConnection, type Socket } from "node:net";
import { setTimeout as delay } from "node:timers/promises";
import type { Releasable } from "../host/scope.js";

/** The least time between two keys, even when the guest echoes at once. */
const MIN_KEY_GAP_MS = 10;

export class SerialConsole implements Releasable {
  /** Bytes the guest has written since we connected. */
  private received = 0;
  private onData: (() => void) | undefined;

  private constructor(private readonly socket: Socket) {
    socket.on("data", (chunk: Buffer) => {
      this.received += chunk.length;
      this.onData?.();
    });
  }

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
        socket.on("error", () => {}); // qemu going away ends the boot, not the build
        return new SerialConsole(socket);
      } catch (e) {
        if (Date.now() > until || signal?.aborted) throw e;
        await delay(100);
      }
    }
  }

  /**
   * Types `text` one character at a time, each after the guest answered the one before.
   * Firmware reads a 16-byte UART FIFO and drops what overflows, and GRUB's editor redraws its
   * line after every key: a fixed pace that is fine on an idle host loses keys (GRUB's Ctrl-X
   * among them) when TCG runs slowly on a loaded one. So after each key we wait for the guest's
   * echo, up to `echoWaitMs`, then go on (a key that echoes nothing costs that wait).
   */
  async type(text: string, echoWaitMs = 2000): Promise<void> {
    for (const ch of text) {
      const before = this.received;
      const echoed = new Promise<void>((resolve) => {
        const timer = setTimeout(done, echoWaitMs);
        this.onData = () => {
          if (this.received > before) done();
        };
        function done(): void {
          clearTimeout(timer);
          resolve();
        }
      });
      await new Promise<void>((resolve) => this.socket.write(ch, () => resolve()));
      await echoed;
      this.onData = undefined;
      await delay(MIN_KEY_GAP_MS);
    }
  }

  async release(): Promise<void> {
    this.socket.destroy();
  }
}
