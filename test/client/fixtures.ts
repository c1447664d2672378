/**
 * Shared set-up for the client tests: the real server as a child process (test/battle/server.ts) on this run's
 * database, and a typed client per DID.
 */
import type { Hono } from "hono";
import type { Client, ClientOptions } from "mls-delivery-service/client";
import { clientFor as testClient } from "../helpers/client.js";

export { SUITE } from "../helpers/rosterGroup.js";
export { newDid } from "../helpers/context.js";

/**
 * A client acting as `did` against a URL or an in-process app (test/helpers/client.ts `clientFor`), retrying as
 * the client does by default (unlimited attempts, within its deadline): these tests are about the client's retries.
 * `options` override the rest (fetch, retry).
 */
export const clientFor = (target: string | Hono, did: string, options: Partial<ClientOptions> = {}): Client =>
  testClient(target, did, { ...options, retry: { maxAttempts: Number.POSITIVE_INFINITY, ...options.retry } });

/** An expiry a day from now, as publishKeyPackage takes it. */
export const tomorrow = () => new Date(Date.now() + 86_400_000).toISOString();

/** Counts the requests a client sends, per method, and passes them on. */
export function countingFetch(fetch: (request: Request) => Promise<Response> = (request) => globalThis.fetch(request)) {
  const sent: string[] = [];
  return {
    sent,
    fetch: (request: Request) => {
      sent.push(new URL(request.url).pathname.replace("/xrpc/blue.catbird.mls.", ""));
      return fetch(request);
    },
  };
}
