/**
 * Calls to the Kiln API with the session's token. Errors are the service's RFC 7807 problems
 * (`{status, detail, code, errors: [{path, message}]}`), thrown as ApiError so forms can put each
 * field's message next to the field.
 */
import { savedToken } from "./session.js";

export interface FieldProblem {
  path: string;
  message: string;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly detail: string,
    readonly code: string,
    readonly errors: FieldProblem[] = [],
  ) {
    super(detail);
  }
}

/** Set by the app: what to do when the token stops working (back to the login page). */
let onUnauthorized: () => void = () => {};
export function whenUnauthorized(f: () => void): void {
  onUnauthorized = f;
}

function headers(extra: Record<string, string> = {}, token = savedToken()): Record<string, string> {
  return { ...(token ? { authorization: `Bearer ${token}` } : {}), ...extra };
}

async function fail(r: Response): Promise<never> {
  let body: { detail?: string; code?: string; errors?: FieldProblem[] } = {};
  try {
    body = (await r.json()) as typeof body;
  } catch {
    // not a problem document (a proxy's page): the status says enough
  }
  if (r.status === 401) onUnauthorized();
  throw new ApiError(r.status, body.detail ?? r.statusText, body.code ?? "", body.errors ?? []);
}

/** A JSON call; resolves to the parsed body (undefined for 204). */
export async function api<T>(method: string, path: string, body?: unknown, token?: string): Promise<T> {
  const init: RequestInit = { method, headers: headers(body === undefined ? {} : { "content-type": "application/json" }, token) };
  if (body !== undefined) init.body = JSON.stringify(body);
  const r = await fetch(path, init);
  if (!r.ok) return fail(r);
  if (r.status === 204) return undefined as T;
  return (await r.json()) as T;
}

/** A text resource (an artifact, a log snapshot). */
export async function apiText(path: string, signal?: AbortSignal): Promise<string> {
  const r = await fetch(path, { headers: headers(), ...(signal ? { signal } : {}) });
  if (!r.ok) return fail(r);
  return r.text();
}

/** HEAD of an object: its size, md5 and sha256 as the service records them. */
export async function apiHead(path: string): Promise<{ size: number | undefined; md5: string | undefined; sha256: string | undefined }> {
  const r = await fetch(path, { method: "HEAD", headers: headers() });
  if (!r.ok) return fail(r);
  const len = r.headers.get("content-length");
  return { size: len === null ? undefined : Number(len), md5: r.headers.get("x-kiln-md5sum") ?? undefined, sha256: r.headers.get("x-kiln-sha256") ?? undefined };
}

/** Uploads a file as the request body (a recipe archive). */
export async function apiUpload<T>(path: string, file: Blob): Promise<T> {
  const r = await fetch(path, { method: "PUT", headers: headers({ "content-type": "application/gzip" }), body: file });
  if (!r.ok) return fail(r);
  return (await r.json()) as T;
}

/**
 * Streams a text response as it arrives (a job's log while the job runs), calling `onText` with
 * each decoded piece. Resolves when the server ends the response.
 */
export async function apiStream(path: string, onText: (s: string) => void, signal: AbortSignal): Promise<void> {
  const r = await fetch(path, { headers: headers(), signal });
  if (!r.ok || !r.body) return fail(r);
  const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    onText(value);
  }
}
