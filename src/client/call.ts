import { ConnectionLostError, DeadlineError, ProtocolError, XrpcClientError } from "./errors.js";
import { MAX_ANSWER_BYTES } from "./limits.js";
import { KINDS, type JsonMethodName } from "./methods.js";
import { withRetry, type RetryOptions } from "./retry.js";
import { abortable, readText } from "./signals.js";
import type { Answer } from "./types.js";
import { fromWire, queryString, toWire } from "./wire.js";

/** An error answer is {error, message}: more than this is not one, and is left unread. */
const MAX_ERROR_BYTES = 64 * 1024;

const NSID_PREFIX = "blue.catbird.mls.";

/** Where and how requests go. */
export interface Transport {
  /** The server's base URL, e.g. `https://mls.example.com`. */
  service: string;
  /** Sends one request: the global `fetch`, or an in-process app (`(request) => app.fetch(request)`). */
  fetch: (request: Request) => Response | Promise<Response>;
  /** The bearer token, asked for on every request (a PDS service token is single-use). */
  token?: () => Promise<string> | string;
  retry: RetryOptions;
  /** An open event stream with nothing (not even a keep-alive) for this long is reconnected (ms). */
  streamIdleMs: number;
}

export interface CallOptions {
  /** The procedure's idempotency key; default: the input's `idempotencyKey`, else a fresh UUID per call. */
  idempotencyKey?: string;
  /** Overrides the client's deadline for this call (ms). */
  deadlineMs?: number;
  signal?: AbortSignal;
}

/**
 * One XRPC request; any answer but 2xx is thrown as an XrpcClientError. `body` is the JSON text. `signal` bounds
 * the token, the fetch and an error answer's body; a 2xx body is the caller's to read (and to cancel).
 */
export async function send(
  transport: Transport,
  method: string,
  request: { query?: object; body?: string; headers?: Record<string, string> },
  signal?: AbortSignal,
): Promise<Response> {
  const headers = new Headers(request.headers);
  if (transport.token) {
    headers.set("Authorization", `Bearer ${await abortable(Promise.resolve(transport.token()), signal)}`);
  }
  // Aborted while the token came: an injected fetch need not look at a signal that was aborted before it was called.
  signal?.throwIfAborted();
  if (request.body !== undefined) headers.set("Content-Type", "application/json");
  const url = `${transport.service.replace(/\/+$/, "")}/xrpc/${NSID_PREFIX}${method}${queryString(request.query ?? {})}`;
  const sent = new Request(url, {
    method: request.body !== undefined ? "POST" : "GET",
    headers,
    body: request.body,
    signal,
  });
  let response: Response;
  try {
    // Raced against the signal too: the Request's own link to it is weak (see signals.ts).
    response = await abortable(
      Promise.resolve().then(() => transport.fetch(sent)),
      signal,
      (late) => {
        void late.body?.cancel().catch(() => {});
      },
    );
  } catch (error) {
    if (signal?.aborted) throw error;
    throw new ConnectionLostError(error);
  }
  if (!response.ok) {
    const text = await readText(response, MAX_ERROR_BYTES, signal).catch(() => undefined);
    signal?.throwIfAborted();
    throw XrpcClientError.of(response, text);
  }
  return response;
}

/**
 * A logical call: one idempotency key for a procedure, kept across every retry, so the server does the work at
 * most once and a retry after a lost answer gets the stored one (reported as `replayed`).
 */
export function call(
  transport: Transport,
  method: JsonMethodName,
  input: object,
  options: CallOptions = {},
): Promise<Answer<unknown>> {
  const procedure = KINDS[method] === "procedure";
  const fieldKey = (input as { idempotencyKey?: string }).idempotencyKey;
  const key = procedure ? (options.idempotencyKey ?? fieldKey ?? crypto.randomUUID()) : undefined;
  // The server refuses a header and a body field that differ: the body carries the key the call uses.
  const body = procedure ? (fieldKey === undefined ? input : { ...input, idempotencyKey: key }) : undefined;
  const retry = { ...transport.retry, ...(options.deadlineMs !== undefined && { deadlineMs: options.deadlineMs }) };
  // Serialized once: every attempt sends the same bytes under the key, whatever the caller does to its buffers.
  const payload = body && JSON.stringify(toWire(body));
  const headers: Record<string, string> = key === undefined ? {} : { "Idempotency-Key": key };
  return withRetry(
    async (signal) => {
      const response = await send(transport, method, payload ? { body: payload, headers } : { query: input }, signal);
      const text = await readText(response, MAX_ANSWER_BYTES, signal).catch((error: unknown) => {
        if (signal.aborted || error instanceof ProtocolError) throw error;
        throw new ConnectionLostError(error);
      });
      return {
        data: fromWire(JSON.parse(text)),
        status: response.status,
        replayed: response.headers.get("Idempotent-Replayed") === "true",
        ...(key !== undefined && { idempotencyKey: key }),
        requestId: response.headers.get("X-Request-Id") ?? undefined,
      };
    },
    retry,
    options.signal,
  ).catch((error: unknown) => {
    // The caller continues the logical call with this key (the call may have run).
    const keyed = error instanceof XrpcClientError || error instanceof ConnectionLostError;
    if (key !== undefined && (keyed || error instanceof DeadlineError)) error.idempotencyKey = key;
    throw error;
  });
}
