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
