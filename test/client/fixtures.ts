/**
 * Shared set-up for the client tests: the real server as a child process (test/battle/server.ts) on this run's
 * database, and a typed client per DID with a fresh test token per request.
 */
import { createClient, type Client, type ClientOptions } from "mls-delivery-service/client";
import { tokenFor, unique } from "../helpers/context.js";

export { SUITE } from "../helpers/rosterGroup.js";

export const newDid = (name: string) => unique(`did:plc:${name}`);

/** A client acting as `did` against `url`; `options` override the rest (fetch, retry). */
export const clientFor = (url: string, did: string, options: Partial<ClientOptions> = {}): Client =>
  createClient({ service: url, token: () => tokenFor(did), ...options });

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
