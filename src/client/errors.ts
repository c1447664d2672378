/** An XRPC error answer: `{"error", "message"}` with its HTTP status and `Retry-After` (in seconds) when given. */
export class XrpcClientError extends Error {
  override readonly name = "XrpcClientError";
  /** The key of the procedure call that failed: continue the logical call with it. */
  idempotencyKey?: string;

  constructor(
    readonly status: number,
    readonly error: string,
    message: string,
    readonly retryAfter: number | undefined,
    readonly requestId: string | undefined,
  ) {
    super(message);
  }

  /** Reads an error response from its body's text; a body that is not the XRPC error shape still gives the status. */
  static of(response: Response, text: string | undefined): XrpcClientError {
    let body: { error?: unknown; message?: unknown } | undefined;
    try {
      body = text === undefined ? undefined : JSON.parse(text);
    } catch {
      body = undefined;
    }
    const error = typeof body?.error === "string" ? body.error : `HTTP${response.status}`;
    const message = typeof body?.message === "string" ? body.message : response.statusText;
    const requestId = response.headers.get("X-Request-Id") ?? undefined;
    return new XrpcClientError(response.status, error, message, retryAfterSeconds(response.headers), requestId);
  }
}

/** `Retry-After` as seconds from now: delta-seconds or an HTTP date. */
function retryAfterSeconds(headers: Headers): number | undefined {
  const value = headers.get("Retry-After");
  if (value === null) return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value);
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, (date - Date.now()) / 1000);
}

/** The request or its answer was lost on the way (fetch threw, or the body broke off): it may or may not have run. */
export class ConnectionLostError extends Error {
  override readonly name = "ConnectionLostError";
  idempotencyKey?: string;

  constructor(cause: unknown) {
    super(cause instanceof Error ? cause.message : String(cause), { cause });
  }
}

/** The call's deadline passed (an attempt still running was cut short); it may or may not have run. */
export class DeadlineError extends Error {
  // The name of the DOMException an abort by timeout gives, so `error.name === "TimeoutError"` holds either way.
  override readonly name = "TimeoutError";
  idempotencyKey?: string;

  constructor() {
    super("the call's deadline passed");
  }
}

/** The server's answer broke the protocol (an event stream that is not one, an event without id, bad data). */
export class ProtocolError extends Error {
  override readonly name = "ProtocolError";

  constructor(message: string, cause?: unknown) {
    super(message, { cause });
  }
}

/**
 * acceptWelcome: `process` joined the group but confirming it failed (410 `WelcomeGone` once the grace period has
 * passed, or the connection). The join stands (membership does not depend on the confirm): keep `joined`.
 */
export class WelcomeConfirmError<T = unknown> extends Error {
  override readonly name = "WelcomeConfirmError";

  constructor(
    readonly joined: T,
    cause: unknown,
  ) {
    super(`joined, but confirming the welcome failed: ${cause instanceof Error ? cause.message : String(cause)}`, {
      cause,
    });
  }
}
