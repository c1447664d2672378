import { ConnectionLostError, DeadlineError, XrpcClientError } from "./errors.js";
import { delay, linked, MAX_TIMER_MS } from "./signals.js";

export interface RetryOptions {
  /** How long one logical call may take, its retries included (ms): an attempt still running then is aborted. */
  deadlineMs: number;
  /** The first backoff (ms); each retry doubles it, with jitter, up to `maxDelayMs`. `Retry-After` wins when longer. */
  baseDelayMs: number;
  maxDelayMs: number;
  /** Attempts per logical call, the first included (1: never retried); the deadline bounds them in any case. */
  maxAttempts: number;
}

export const DEFAULT_RETRY: RetryOptions = {
  deadlineMs: 30_000,
  baseDelayMs: 100,
  maxDelayMs: 5_000,
  maxAttempts: Number.POSITIVE_INFINITY,
};

/**
 * Whether sending the same request again is safe and may succeed: the connection was lost, the server failed or is
 * not ready (5xx, nothing stored for the key), is still running the key's first request (409 IdempotencyKeyInUse)
 * or asks to slow down (429). Any other 4xx would answer the same again; anything else (a token supplier that
 * failed) is not the network's doing.
 */
function isRetryable(failure: unknown): boolean {
  if (failure instanceof ConnectionLostError) return true;
  if (!(failure instanceof XrpcClientError)) return false;
  const { status, error } = failure;
  return status >= 500 || status === 429 || (status === 409 && error === "IdempotencyKeyInUse");
}

/**
 * Runs `attempt` until it succeeds, fails for good or the deadline passes (the last failure is thrown), or `signal`
 * aborts (its reason is thrown; so is the deadline's TimeoutError when it cut an attempt short).
 */
export async function withRetry<T>(
  attempt: (signal: AbortSignal) => Promise<T>,
  options: RetryOptions,
  signal?: AbortSignal,
): Promise<T> {
  const { deadlineMs } = options;
  // A longer one would overflow setTimeout, which then fires at once.
  if (!(deadlineMs > 0 && deadlineMs <= MAX_TIMER_MS)) {
    throw new RangeError(`deadlineMs must be a number of ms in (0, ${MAX_TIMER_MS}], not ${deadlineMs}`);
  }
  const deadline = Date.now() + deadlineMs;
  for (let tries = 0; ; tries++) {
    const { controller, dispose } = linked(signal);
    const timer = setTimeout(() => controller.abort(new DeadlineError()), delay(deadline - Date.now()));
    try {
      return await attempt(controller.signal);
    } catch (failure) {
      if (signal?.aborted) throw signal.reason;
      if (controller.signal.aborted) throw controller.signal.reason;
      if (!isRetryable(failure) || tries + 1 >= options.maxAttempts) throw failure;
      const wait = backoff(tries, failure, options);
      // A wait past the deadline (a long Retry-After) would only end at it: the failure is final now.
      if (!(Date.now() + wait < deadline)) throw failure;
      await sleep(wait, signal);
    } finally {
      clearTimeout(timer);
      dispose();
    }
  }
}

/** The wait before retry `tries` + 1: exponential with jitter, capped at `maxDelayMs`, at least `failure`'s Retry-After. */
export function backoff(
  tries: number,
  failure: unknown,
  { baseDelayMs, maxDelayMs }: Pick<RetryOptions, "baseDelayMs" | "maxDelayMs">,
): number {
  const exponential = Math.min(maxDelayMs, baseDelayMs * 2 ** tries) * (0.5 + Math.random() / 2);
  const retryAfter = failure instanceof XrpcClientError ? (failure.retryAfter ?? 0) * 1000 : 0;
  return Math.max(exponential, retryAfter);
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", abort);
      resolve();
    }, delay(ms));
    const abort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    signal?.addEventListener("abort", abort, { once: true });
  });
}
