/**
 * A small client of Kiln's IMS API (and of any IMS server for the IMS routes): JSON in and out,
 * bearer token, problems turned back into KilnErrors so the CLI reports them like its own
 * (`kiln: error: …`, exit code by kind).
 */
import { ERROR_CODES, KilnError, type ErrorCode, type Problem } from "../errors.js";

export interface ClientOptions {
  url: string;
  token?: string;
}

const BY_STATUS: Record<number, ErrorCode> = { 400: "BAD_REQUEST", 401: "UNAUTHORIZED", 403: "FORBIDDEN", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 409: "CONFLICT", 413: "TOO_LARGE", 422: "REQUEST_INVALID" };

/** A record id of the service (a UUID): what commands that take an out dir or an image id (kiln diff, kiln attest verify) read as an image id. */
export const IMAGE_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** The API path that serves an s3:// object of the service: GET /v3/artifacts/<bucket>/<key>. */
export function artifactApiPath(s3: string): string {
  return `/v3/artifacts/${s3.replace(/^s3:\/\//, "")}`;
}

export class ImsClient {
  readonly base: string;

  constructor(private readonly opts: ClientOptions) {
    this.base = opts.url.replace(/\/+$/, "");
  }

  private headers(extra: Record<string, string> = {}): Record<string, string> {
    return { ...(this.opts.token ? { authorization: `Bearer ${this.opts.token}` } : {}), ...extra };
  }

  /** Sends a request; returns the Response when it is 2xx, throws the problem as a KilnError otherwise. */
  async raw(method: string, path: string, init: { body?: string | Uint8Array; headers?: Record<string, string>; signal?: AbortSignal } = {}): Promise<Response> {
    let res: Response;
    try {
      res = await fetch(this.base + path, { method, headers: this.headers(init.headers), body: init.body, signal: init.signal });
    } catch (e) {
      if ((e as Error).name === "AbortError") throw e;
      const cause = (e as { cause?: { code?: string; message?: string } }).cause;
      throw new KilnError("SERVICE_UNREACHABLE", `cannot reach ${this.base} (${cause?.code ?? cause?.message ?? (e as Error).message})`, {
        hint: "check --url / KILN_URL and that `kiln serve` runs there",
      });
    }
    if (res.ok) return res;
    throw await problemError(res, method, path);
  }

  async json<T = unknown>(method: string, path: string, body?: unknown): Promise<T | undefined> {
    const res = await this.raw(method, path, body === undefined ? {} : { body: JSON.stringify(body), headers: { "content-type": "application/json" } });
    if (res.status === 204) return undefined;
    const text = await res.text();
    return text ? (JSON.parse(text) as T) : undefined;
  }
}

async function problemError(res: Response, method: string, path: string): Promise<KilnError> {
  const text = await res.text().catch(() => "");
  let p: { detail?: string; title?: string; code?: string; errors?: Problem[] } = {};
  try {
    p = JSON.parse(text) as typeof p;
  } catch {
    p = { detail: text.slice(0, 300) };
  }
  const code: ErrorCode = p.code && p.code in ERROR_CODES ? (p.code as ErrorCode) : (BY_STATUS[res.status] ?? "SERVICE_UNREACHABLE");
  const detail = p.detail ?? p.title ?? res.statusText;
  const fields = (p.errors ?? []).filter((e) => !detail.includes(e.message)).map((e) => `${e.path}: ${e.message}`);
  return new KilnError(code, `${method} ${path}: ${res.status} ${detail}${fields.length ? ` (${fields.join("; ")})` : ""}`, { problems: p.errors ?? [] });
}
