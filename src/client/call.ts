import { ConnectionLostError, XrpcClientError } from "./errors.js";
import { KINDS, type JsonMethodName } from "./methods.js";
import { withRetry, type RetryOptions } from "./retry.js";
import type { Answer } from "./types.js";
import { fromWire, queryString, toWire } from "./wire.js";

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
}

export interface CallOptions {
  /** The procedure's idempotency key; default: the input's `idempotencyKey`, else a fresh UUID per call. */
  idempotencyKey?: string;
  /** Overrides the client's deadline for this call (ms). */
  deadlineMs?: number;
  signal?: AbortSignal;
}

/** One XRPC request; any answer but 2xx is thrown as an XrpcClientError. */
export async function send(
  transport: Transport,
  method: string,
  request: { query?: object; body?: object; headers?: Record<string, string> },
  signal?: AbortSignal,
): Promise<Response> {
  const headers = new Headers(request.headers);
  if (transport.token) headers.set("Authorization", `Bearer ${await transport.token()}`);
  // Aborted while the token came: an injected fetch need not look at a signal that was aborted before it was called.
  signal?.throwIfAborted();
  if (request.body) headers.set("Content-Type", "application/json");
  const url = `${transport.service.replace(/\/+$/, "")}/xrpc/${NSID_PREFIX}${method}${queryString(request.query ?? {})}`;
  const sent = new Request(url, {
    method: request.body ? "POST" : "GET",
    headers,
    body: request.body && JSON.stringify(toWire(request.body)),
    signal,
  });
  let response: Response;
  try {
    response = await transport.fetch(sent);
  } catch (error) {
    throw new ConnectionLostError(error);
  }
  if (!response.ok) throw await XrpcClientError.of(response);
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
  return withRetry(
    async (signal) => {
      const headers: Record<string, string> = key === undefined ? {} : { "Idempotency-Key": key };
      const response = await send(transport, method, body ? { body, headers } : { query: input }, signal);
      const text = await response.text().catch((error: unknown) => {
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
  );
}
