/**
 * Mounts as values. Each function mounts and returns a Mount whose release() unmounts it; put it
 * in a Scope so it is undone on success, failure and cancel. Every mount Kiln makes lives under a
 * build's work dir (or the cache), which is how the startup sweep finds the mounts of a build
 * that was killed (sweep.ts), so nothing here needs a journal of its own.
 *
 * Loop devices are only ever made by `mount -o loop`, which sets LO_FLAGS_AUTOCLEAR: unmounting
 * frees the device. No bare `losetup`, so no loop device can outlive its mount.
 */
import { mkdir } from "node:fs/promises";
import { exec, type ExecOptions } from "./exec.js";
import type { Releasable } from "./scope.js";

export interface Mount extends Releasable {
  readonly path: string;
}

type HostOpts = Pick<ExecOptions, "log" | "workDir">;

async function mountAt(target: string, argv: string[], opts: HostOpts): Promise<Mount> {
  await mkdir(target, { recursive: true });
  // No signal: a mount must finish or fail by itself, or we could not know whether to undo it.
  await exec(["mount", ...argv, target], { log: opts.log, workDir: opts.workDir });
  let mounted = true;
  return {
    path: target,
    async release() {
      if (!mounted) return;
      await unmount(target, opts);
      mounted = false;
    },
  };
}

/** Unmounts, retrying briefly while the target is busy (a child that just exited, udev probing a loop). */
export async function unmount(target: string, opts: HostOpts = {}): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await exec(["umount", target], { log: opts.log });
      return;
    } catch (e) {
      if (attempt >= 10) {
        // Last resort: detach it lazily so the build can finish; the kernel frees it once idle.
        await exec(["umount", "--lazy", target], { log: opts.log });
        return;
      }
      await new Promise((r) => setTimeout(r, 200 * (attempt + 1)));
      if (attempt === 0) opts.log?.line(`umount ${target} busy, retrying: ${(e as Error).message}`);
    }
  }
}

/**
 * overlayfs over read-only layers. `lower` is ordered top first (overlayfs' own order). Without
 * `upper` the mount is read-only, which is how artifact stages read a sealed root.
 */
export async function mountOverlay(
  target: string,
  layers: { lower: string[]; upper?: string; work?: string },
  opts: HostOpts,
): Promise<Mount> {
  if (layers.lower.length === 0) throw new Error("mountOverlay: no lower layers");
  if (layers.upper && !layers.work) throw new Error("mountOverlay: upper needs work");
  // A single lower dir with no upper is not valid overlayfs: bind it read-only instead.
  if (!layers.upper && layers.lower.length === 1) {
    return mountBind(layers.lower[0]!, target, { ...opts, readOnly: true });
  }
  for (const l of layers.lower) checkOverlayPath(l);
  const options = [`lowerdir=${layers.lower.join(":")}`];
  if (layers.upper) {
    checkOverlayPath(layers.upper);
    checkOverlayPath(layers.work!);
    await mkdir(layers.upper, { recursive: true });
    await mkdir(layers.work!, { recursive: true });
    options.push(`upperdir=${layers.upper}`, `workdir=${layers.work}`);
  }
  return mountAt(target, ["-t", "overlay", "overlay", "-o", options.join(",")], opts);
}

function checkOverlayPath(p: string): void {
  // overlayfs splits lowerdir on ':' and options on ','.
  if (/[:,]/.test(p)) throw new Error(`overlay layer path may not contain ':' or ',': ${p}`);
}

export async function mountBind(
  source: string,
  target: string,
  opts: HostOpts & { readOnly?: boolean },
): Promise<Mount> {
  const m = await mountAt(target, ["--bind", source], opts);
  if (opts.readOnly) {
    try {
      await exec(["mount", "-o", "remount,bind,ro", target], { log: opts.log });
    } catch (e) {
      await m.release();
      throw e;
    }
  }
  return m;
}

/** Mounts a filesystem image file read-only through an auto-clearing loop device. */
export async function mountImageFile(
  file: string,
  target: string,
  opts: HostOpts & { fstype?: string; offset?: number; sizeLimit?: number; extra?: string[] },
): Promise<Mount> {
  const o = ["ro", "loop", ...(opts.extra ?? [])];
  if (opts.offset) o.push(`offset=${opts.offset}`);
  if (opts.sizeLimit) o.push(`sizelimit=${opts.sizeLimit}`);
  const argv = [...(opts.fstype ? ["-t", opts.fstype] : []), "-o", o.join(","), file];
  return mountAt(target, argv, opts);
}

export async function mountTmpfs(target: string, opts: HostOpts & { size?: string; mode?: string }): Promise<Mount> {
  const o = [`mode=${opts.mode ?? "0755"}`, ...(opts.size ? [`size=${opts.size}`] : [])];
  return mountAt(target, ["-t", "tmpfs", "-o", o.join(","), "tmpfs"], opts);
}

export async function mountFs(
  type: string,
  source: string,
  target: string,
  options: string[],
  opts: HostOpts,
): Promise<Mount> {
  return mountAt(target, ["-t", type, ...(options.length ? ["-o", options.join(",")] : []), source], opts);
}
