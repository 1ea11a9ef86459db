/** `kiln ims … --json` and polling, as the service's end-to-end tests drive them. */
import assert from "node:assert/strict";
import { runKiln } from "./kiln.js";

/** Runs `kiln ims ARGS --json` with `env` (KILN_URL, KILN_TOKEN); fails the test on a non-zero exit. */
export async function imsJson<T = Record<string, unknown>>(args: string[], env: Record<string, string>): Promise<T> {
  const r = await runKiln(["ims", ...args, "--json"], { env });
  assert.equal(r.code, 0, `kiln ims ${args.join(" ")}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

/** Polls `fn` every 250 ms until it returns a value; throws after `seconds`. */
export async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, seconds: number): Promise<T> {
  const end = Date.now() + seconds * 1000;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out after ${seconds} s waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}
