/**
 * The errors a store raises, worded the same way by every implementation: the message starts
 * with `store <kind>:` so an operator knows which backend spoke (STYLE "Backends are small
 * interfaces": a misconfigured one says so by name).
 */
import { KilnError } from "../errors.js";

export type StoreKind = "fs" | "s3";

/** A setting is missing or wrong; `env` names the variable that would supply it. */
export function storeConfigError(kind: StoreKind | undefined, message: string, env?: string): KilnError {
  return new KilnError("STORE_CONFIG", `store${kind ? ` ${kind}` : ""}: ${message}${env ? ` (env ${env})` : ""}`);
}

/** A request the store refused or could not carry out; `what` is e.g. `put boot-images/x/rootfs`. */
export function storeFailed(kind: StoreKind, what: string, reason: string, cause?: unknown): KilnError {
  return new KilnError("STORE_FAILED", `store ${kind}: ${what}: ${reason}`, { cause });
}

/** The server stayed away (connection errors, 5xx) for the whole retry time: worth a later try. */
export function storeUnavailable(kind: StoreKind, what: string, reason: string, cause?: unknown): KilnError {
  return new KilnError("STORE_UNAVAILABLE", `store ${kind}: ${what}: ${reason}`, { cause });
}

/** A key or range the caller should not have asked for (the API answers 4xx). */
export function storeBadRequest(kind: StoreKind, what: string, reason: string): KilnError {
  return new KilnError("INPUT_INVALID", `store ${kind}: ${what}: ${reason}`);
}

export function missingBucket(kind: StoreKind, what: string, bucket: string): KilnError {
  return storeFailed(kind, what, `bucket "${bucket}" does not exist (ensureBucket() makes it)`);
}
