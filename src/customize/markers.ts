/**
 * Completion markers. The operator ends a session by creating a file named `complete` (package a
 * new image) or `failed` (make none), as in IMS: `/tmp/complete` inside a jail, whose /tmp is a
 * tmpfs of the jail's own (watched from the host through /proc/<init>/root/tmp, and gone with the
 * jail, so it can never be packaged), or `/mnt/image/complete` when not jailed, which is the
 * image's own top directory (removed again by the session on close).
 *
 * Watching is a poll of two lstat() calls every 250 ms (IMS polls every 5 s): inotify would
 * need a watch through another mount namespace for a file that is only ever created once.
 * Any kind of file counts, and symlinks are not followed.
 */
import { lstat } from "node:fs/promises";
import path from "node:path";

export type Marker = "complete" | "failed";

export const MARKERS: readonly Marker[] = ["complete", "failed"];

export interface MarkerWatch {
  /** Settles with the first marker seen; `failed` wins when both appear together. */
  readonly result: Promise<Marker>;
  stop(): void;
}

export function watchMarkers(dir: string, opts: { intervalMs?: number } = {}): MarkerWatch {
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const result = new Promise<Marker>((resolve) => {
    const tick = async () => {
      if (stopped) return;
      const failed = await exists(path.join(dir, "failed"));
      const complete = !failed && (await exists(path.join(dir, "complete")));
      if (stopped) return;
      if (failed || complete) {
        stopped = true;
        resolve(failed ? "failed" : "complete");
        return;
      }
      timer = setTimeout(() => void tick(), opts.intervalMs ?? 250);
    };
    void tick();
  });
  return {
    result,
    stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
    },
  };
}

async function exists(p: string): Promise<boolean> {
  return lstat(p).then(() => true, () => false);
}
