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
import { expect } from "vitest";
import type { Client, ClientOptions } from "mls-delivery-service/client";
import { clientFor } from "./client.js";
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
  { body, query, headers = {} }: { body?: unknown; query?: Record<string, string | string[]>; headers?: Record<string, string> } = {},
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
  const text = await response.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON: keep the text
  }
  return { status: response.status, body: parsed, headers: response.headers };
}

/**
 * The typed client in process (one attempt, see `clientFor`), with every error answer checked as the raw tests
 * checked theirs: no 5xx but 503, and a JSON body of exactly `{error, message}`, both strings. A failed check
 * fails the call (the client reports it as a lost connection, with the assertion as its cause).
 */
export function checkedClient(app: Hono, did: string | null, options: Partial<ClientOptions> = {}): Client {
  return clientFor(app, did, {
    fetch: async (request) => {
      const response = await app.fetch(request);
      if (response.status >= 400) {
        if (response.status >= 500) expect(response.status, `${request.method} ${request.url}`).toBe(503);
        const body = (await response.clone().json()) as Record<string, unknown>;
        expect(Object.keys(body).sort(), JSON.stringify(body)).toEqual(["error", "message"]);
        expect([typeof body.error, typeof body.message]).toEqual(["string", "string"]);
      }
      return response;
    },
    ...options,
  });
}
