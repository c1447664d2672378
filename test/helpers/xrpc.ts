/**
 * In-process XRPC helpers for the tests of test/exactly-once, test/events, test/db, test/http, test/ops and the
 * top-level test files (and, for now, test/devices and test/keyPackages).
 *
 * `xrpc` is the raw request: for malformed input (bad JSON, bad fields, parameters given twice, malformed keys) and
 * for what the typed client hides on purpose (a send without an Idempotency-Key, the exact answer text, headers such
 * as Retry-After or Idempotent-Replayed on an error). Everything else goes through the typed client
 * (`clientFor` in ./client.ts, or `checkedClient` here).
 */
import type { Hono } from "hono";
import type { Client, ClientOptions } from "mls-delivery-service/client";
import { checkedFetch, clientFor, jsonOrText } from "./client.js";
import { tokenFor } from "./context.js";

export interface XrpcResult {
  status: number;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  body: any;
  headers: Headers;
}

/** Calls an XRPC method as `did`: POST with a JSON body when `body` is given, else GET with `query`. */
export async function xrpc(
  app: Hono,
  did: string | undefined,
  method: string,
  {
    body,
    query,
    headers = {},
  }: { body?: unknown; query?: Record<string, string | string[]>; headers?: Record<string, string> } = {},
): Promise<XrpcResult> {
  const auth: Record<string, string> = did ? { Authorization: `Bearer ${await tokenFor(did)}` } : {};
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(query ?? {})) {
    for (const item of Array.isArray(value) ? value : [value]) search.append(key, item);
  }
  const path = `/xrpc/blue.catbird.mls.${method}${search.size ? `?${search}` : ""}`;
  const response = await app.request(
    path,
    body === undefined
      ? { headers: { ...auth, ...headers } }
      : {
          method: "POST",
          headers: { ...auth, "Content-Type": "application/json", ...headers },
          body: typeof body === "string" ? body : JSON.stringify(body),
        },
  );
  return { status: response.status, body: jsonOrText(await response.text()), headers: response.headers };
}

/**
 * The typed client in process (one attempt, see `clientFor`), with every answer checked as the raw tests checked
 * theirs (`checkedFetch` with `allow503`): no 5xx but 503, and an error body of exactly `{error, message}`, both
 * strings. A failed check fails the call (the client reports it as a lost connection, with the assertion as its cause).
 */
export function checkedClient(app: Hono, did: string | null, options: Partial<ClientOptions> = {}): Client {
  return clientFor(app, did, { fetch: checkedFetch(app, { allow503: true }), ...options });
}
