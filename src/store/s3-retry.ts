/**
 * How the S3 store rides out an outage: a server restarting, a network blip, a 503 while RGW
 * starts. The AWS SDK's own strategy gives up after 3 attempts (well under a second), so a restart
 * of a few seconds failed whatever the job was uploading. This strategy retries every request
 * that failed for a reason a later attempt can cure (connection errors, timeouts, 5xx, throttling)
 * with exponential backoff, until `budgetSeconds` have passed since the request's first attempt;
 * a client error (403, 404, a bad request) is never retried. Multipart uploads retry part by part
 * (their parts are buffers), so an upload resumes where it stopped instead of starting again.
 *
 * It implements the SDK's RetryStrategyV2 contract (acquire a token, refresh it after a failure
 * or throw, record success); the token carries the delay and the SDK's middleware sleeps it.
 */

/** The SDK's classification of a failed attempt (@smithy/types RetryErrorType). */
type RetryErrorType = "TRANSIENT" | "THROTTLING" | "SERVER_ERROR" | "CLIENT_ERROR";

interface RetryToken {
  getRetryCount(): number;
  getRetryDelay(): number;
}

interface Attempt extends RetryToken {
  readonly startedAt: number;
}

export interface StoreRetryOptions {
  /** Give up once a request has been failing this long. */
  budgetSeconds: number;
  /** First delay; doubled each retry up to maxDelayMs. */
  firstDelayMs?: number;
  maxDelayMs?: number;
  /** For tests. */
  now?: () => number;
  /** Told before each retry (the job log says the store is away). */
  onRetry?: (retry: number, delayMs: number, error: unknown) => void;
}

export class PatientRetryStrategy {
  readonly mode = "standard";
  private readonly firstDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly now: () => number;

  constructor(private readonly opts: StoreRetryOptions) {
    this.firstDelayMs = opts.firstDelayMs ?? 250;
    this.maxDelayMs = opts.maxDelayMs ?? 5_000;
    this.now = opts.now ?? Date.now;
  }

  async acquireInitialRetryToken(): Promise<RetryToken> {
    return attempt(0, 0, this.now());
  }

  async refreshRetryTokenForRetry(token: RetryToken, info: { error?: unknown; errorType: RetryErrorType }): Promise<RetryToken> {
    const { startedAt } = token as Attempt;
    const retry = token.getRetryCount() + 1;
    const delay = Math.min(this.firstDelayMs * 2 ** (retry - 1), this.maxDelayMs);
    const budgetMs = this.opts.budgetSeconds * 1000;
    if (info.errorType === "CLIENT_ERROR" || this.now() + delay - startedAt > budgetMs) {
      // The SDK throws the request's own error when a refresh fails.
      throw info.error ?? new Error("the object store request failed");
    }
    this.opts.onRetry?.(retry, delay, info.error);
    return attempt(retry, delay, startedAt);
  }

  recordSuccess(): void {}
}

function attempt(count: number, delay: number, startedAt: number): Attempt {
  return { startedAt, getRetryCount: () => count, getRetryDelay: () => delay };
}
