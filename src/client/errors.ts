/** An XRPC error answer: `{"error", "message"}` with its HTTP status and `Retry-After` (in seconds) when given. */
export class XrpcClientError extends Error {
  override readonly name = "XrpcClientError";

  constructor(
    readonly status: number,
    readonly error: string,
    message: string,
    readonly retryAfter: number | undefined,
    readonly requestId: string | undefined,
  ) {
    super(message);
  }

  /** Reads an error response; a body that is not the XRPC error shape still gives the status. */
  static async of(response: Response): Promise<XrpcClientError> {
    const body = (await response.json().catch(() => undefined)) as { error?: unknown; message?: unknown } | undefined;
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

  constructor(cause: unknown) {
    super(cause instanceof Error ? cause.message : String(cause), { cause });
  }
}
