/**
 * Runs a build's work side by side where it allows: a task starts as soon as the tasks it needs
 * have finished and the machine has room for it (docs/architecture.md#running-side-by-side).
 *
 * Room is counted in two budgets: job slots (`--jobs`, about one per core: a task takes the
 * slots of the cores it keeps busy, a stage 1, a TCG guest its vCPUs) and memory (a guest needs
 * its RAM). Ready tasks start in the order given (the plan's order), and a task that does not fit
 * waits for room without later ones overtaking it, so a boot that needs two slots is not starved
 * by a stream of one-slot stages. A task bigger than a whole budget runs when nothing else does.
 *
 * The first task that fails stops the run: no task starts after it, and the running ones get
 * their signal aborted and are awaited, so each releases what it holds (its Scope: mounts,
 * processes) before the first error is thrown. The results come back in the order the tasks were
 * given, never in the order they finished: whatever the timing, result.json lists stages,
 * artifacts and boots the same way.
 */
import os from "node:os";
import { cancelled } from "../errors.js";
import type { PlannedStage } from "../plan/plan.js";

export interface Task<T> {
  /** Unique in a run: a stage's name ("kernel:cloud"), a boot's ("boot:generic:pxe"). */
  id: string;
  /** Ids of the tasks whose results this one needs. */
  after?: readonly string[];
  /** Job slots it keeps busy while it runs (default 1). */
  slots?: number;
  /** Memory it needs while it runs, in MiB (default 0). */
  memoryMiB?: number;
  run(signal: AbortSignal, info: RunInfo): Promise<T>;
}

/** What a running task can ask about the others, for its events. */
export interface RunInfo {
  /** The other tasks running right now, in start order. */
  running(): string[];
  /** Every other task that ran at some moment while this one ran (so far), in start order. */
  ranWith(): string[];
}

export interface Limits {
  /** Job slots (≥ 1). */
  jobs: number;
  /** Memory budget in MiB; unlimited when undefined. */
  memoryMiB?: number;
}

/** Runs the tasks; returns their results in the order of `tasks`. */
export async function runTasks<T>(tasks: readonly Task<T>[], limits: Limits, signal: AbortSignal): Promise<T[]> {
  if (!Number.isInteger(limits.jobs) || limits.jobs < 1) throw new Error(`scheduler: jobs must be a positive integer, got ${limits.jobs}`);
  const ids = new Set<string>();
  for (const t of tasks) {
    if (ids.has(t.id)) throw new Error(`scheduler: two tasks named ${t.id}`);
    ids.add(t.id);
  }
  for (const t of tasks) {
    for (const d of t.after ?? []) if (!ids.has(d)) throw new Error(`scheduler: ${t.id} waits for ${d}, which is not a task`);
  }

  const results = new Map<string, T>();
  const waiting = [...tasks];
  /** Running tasks in start order, each with the ids that overlapped it. */
  const running = new Map<string, { overlap: string[] }>();
  const stop = new AbortController();
  const taskSignal = AbortSignal.any([signal, stop.signal]);
  let failure: { error: unknown } | undefined;
  let usedSlots = 0;
  let usedMemory = 0;
  let wake: () => void = () => {};

  const fits = (t: Task<T>) => {
    if (running.size === 0) return true;
    const slots = t.slots ?? 1;
    const memory = t.memoryMiB ?? 0;
    return usedSlots + slots <= limits.jobs && (limits.memoryMiB === undefined || usedMemory + memory <= limits.memoryMiB);
  };

  const start = (t: Task<T>) => {
    const entry = { overlap: [...running.keys()] };
    for (const other of running.values()) other.overlap.push(t.id);
    usedSlots += t.slots ?? 1;
    usedMemory += t.memoryMiB ?? 0;
    const info: RunInfo = {
      running: () => [...running.keys()].filter((id) => id !== t.id),
      ranWith: () => [...entry.overlap],
    };
    running.set(t.id, entry);
    void (async () => {
      try {
        results.set(t.id, await t.run(taskSignal, info));
      } catch (error) {
        // The first failure is the cause; what fails after it is being stopped because of it.
        if (!failure) {
          failure = { error };
          stop.abort(error);
        }
      } finally {
        running.delete(t.id);
        usedSlots -= t.slots ?? 1;
        usedMemory -= t.memoryMiB ?? 0;
        wake();
      }
    })();
  };

  for (;;) {
    if (!failure && signal.aborted) failure = { error: cancelled(signal.reason) };
    if (!failure) {
      for (let i = 0; i < waiting.length; ) {
        const t = waiting[i]!;
        if (!(t.after ?? []).every((d) => results.has(d))) {
          i++;
          continue;
        }
        if (!fits(t)) break; // no overtaking: it keeps its turn until there is room
        waiting.splice(i, 1);
        start(t);
      }
    }
    if (running.size === 0) {
      if (failure) throw failure.error;
      if (waiting.length === 0) return tasks.map((t) => results.get(t.id)!);
      throw new Error(`scheduler: ${waiting.map((t) => t.id).join(", ")} wait for each other`);
    }
    const woken = new Promise<void>((resolve) => (wake = resolve));
    const onAbort = () => wake();
    signal.addEventListener("abort", onAbort, { once: true });
    await woken;
    signal.removeEventListener("abort", onAbort);
  }
}

/**
 * The stages each planned stage waits for: the one it is built on (its parent, when the plan
 * has it: an import's squashfs copy has none) and the ones whose files it reads (`uses`).
 */
export function stageDependencies(stages: readonly Pick<PlannedStage, "name" | "key" | "record" | "uses">[]): Map<string, string[]> {
  const byKey = new Map(stages.map((s) => [s.key, s.name]));
  const deps = new Map<string, string[]>();
  for (const s of stages) {
    const keys = [s.record.parent, ...Object.values(s.uses ?? {}).map((u) => u.key)];
    deps.set(s.name, [...new Set(keys.map((k) => (k === null ? undefined : byKey.get(k))).filter((n): n is string => n !== undefined))]);
  }
  return deps;
}

/** What the default job count is made from: the host's cores and available memory. */
export interface HostCapacity {
  cores: number;
  /** MemAvailable, in MiB. */
  availableMiB: number;
}

/** Memory assumed per job when deriving the default: apt, dpkg, mksquashfs stay well under it. */
export const MIB_PER_JOB = 1024;
/** Memory left to the host when boots size their guests against what is available. */
export const HOST_RESERVE_MIB = 512;

/** The default of --jobs: one per core, but no more than one per GiB of available memory, at least 1. */
export function defaultJobs(h: HostCapacity): number {
  return Math.max(1, Math.min(h.cores, Math.floor(h.availableMiB / MIB_PER_JOB)));
}

export function hostCapacity(): HostCapacity {
  // os.freemem() is MemAvailable on Linux (reclaimable page cache counts as free).
  return { cores: os.availableParallelism(), availableMiB: Math.floor(os.freemem() / 2 ** 20) };
}
