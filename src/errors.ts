/**
 * Errors Kiln raises on purpose. Each has a code, an HTTP status (for the service) and an exit
 * code (for the CLI). Anything thrown that is not a KilnError is a bug: the CLI prints its stack
 * and asks for a report. docs/errors.md lists exactly these codes (a test keeps them in step).
 */

export interface ErrorSpec {
  status: number;
  exit: number;
  summary: string;
}

export const ERROR_CODES = {
  RECIPE_INVALID: { status: 422, exit: 2, summary: "The recipe does not match the kiln/v1 format." },
  INPUT_INVALID: { status: 422, exit: 2, summary: "An input file (base image, referenced file, out dir) is unusable." },
  USAGE: { status: 400, exit: 2, summary: "The command line is wrong: unknown option, missing argument." },
  NOT_ROOT: { status: 500, exit: 3, summary: "The build needs root (mounts, chroot, loop devices)." },
  TOOL_MISSING: { status: 500, exit: 3, summary: "A host tool the stage needs is not installed." },
  STAGE_FAILED: { status: 500, exit: 1, summary: "A build stage ran and failed." },
  CANCELLED: { status: 499, exit: 130, summary: "The build was cancelled (Ctrl-C, SIGTERM or API)." },
  STORE_CONFIG: { status: 500, exit: 2, summary: "The object store is misconfigured: its URL, a credential, an option." },
  STORE_FAILED: { status: 502, exit: 1, summary: "The object store refused or failed a request (unreachable, denied, bucket missing)." },
  STORE_UNAVAILABLE: { status: 503, exit: 1, summary: "The object store stayed unreachable (or answered 5xx) for the whole retry time." },
  SERVICE_CONFIG: { status: 500, exit: 2, summary: "A setting of kiln serve/worker/token is wrong (flag, environment variable)." },
  CATALOG_FAILED: { status: 503, exit: 1, summary: "The catalog database is unreachable, locked by another process, or failed a query." },
  BAD_REQUEST: { status: 400, exit: 2, summary: "The API request is malformed: empty body, bad JSON, a reference to a missing record." },
  UNAUTHORIZED: { status: 401, exit: 2, summary: "The API request has no bearer token, or an unknown one." },
  FORBIDDEN: { status: 403, exit: 2, summary: "The token's role may not do this (a read-only token writing), or a presigned URL was changed or has expired." },
  NOT_FOUND: { status: 404, exit: 2, summary: "No such record, route or object." },
  METHOD_NOT_ALLOWED: { status: 405, exit: 2, summary: "The route exists but not with this HTTP method." },
  CONFLICT: { status: 409, exit: 2, summary: "The change conflicts with the record's state (a link already set to another path)." },
  TOO_LARGE: { status: 413, exit: 2, summary: "The request body is larger than the service accepts." },
  URI_TOO_LONG: { status: 414, exit: 2, summary: "A segment of the URL path is longer than the service accepts." },
  HEADERS_TOO_LARGE: { status: 431, exit: 2, summary: "The request line and headers together are larger than the service accepts (16 KiB)." },
  REQUEST_TIMEOUT: { status: 408, exit: 1, summary: "The client did not send its request in time." },
  RANGE_NOT_SATISFIABLE: { status: 416, exit: 2, summary: "A Range request asks for bytes outside the object." },
  REQUEST_INVALID: { status: 422, exit: 2, summary: "The request body does not match the record's schema; errors[] names each field." },
  SERVICE_UNREACHABLE: { status: 502, exit: 1, summary: "The client could not reach the Kiln service at its URL." },
  JOB_FAILED: { status: 500, exit: 1, summary: "A job ended in status error (kiln ims jobs wait)." },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERROR_CODES;

/** One problem in an input, with the path of the field it concerns (for RFC 7807 `errors[]`). */
export interface Problem {
  path: string;
  message: string;
}

export class KilnError extends Error {
  readonly code: ErrorCode;
  readonly problems: Problem[];
  readonly hint: string | undefined;

  constructor(code: ErrorCode, message: string, opts: { problems?: Problem[]; hint?: string; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = "KilnError";
    this.code = code;
    this.problems = opts.problems ?? [];
    this.hint = opts.hint;
  }

  get exitCode(): number {
    return ERROR_CODES[this.code].exit;
  }

  get status(): number {
    return ERROR_CODES[this.code].status;
  }
}

export function isKilnError(e: unknown): e is KilnError {
  return e instanceof KilnError;
}

/** Raised by anything that notices the build's AbortSignal fired. */
export function cancelled(reason?: unknown): KilnError {
  const why = typeof reason === "string" ? reason : reason instanceof Error ? reason.message : "cancelled";
  return new KilnError("CANCELLED", `build cancelled: ${why}`);
}
