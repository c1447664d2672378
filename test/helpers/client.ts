/**
 * The typed client (src/client) as the project's own tests use it, over real HTTP (a server's URL) or in process
 * (an app's `fetch`). One attempt per call unless a test asks for more: a test asserts what the server answered,
 * not what a retry made of it.
 */
import type { Hono } from "hono";
import {
  createClient,
  XrpcClientError,
  type Answer,
  type Client,
  type ClientOptions,
} from "mls-delivery-service/client";
import { tokenFor } from "./context.js";

const tokens = new Map<string, Promise<string>>();
/** One dev token per DID for the whole run (they last an hour): signing one per request is needless work. */
function cachedToken(did: string): Promise<string> {
  let token = tokens.get(did);
  if (!token) tokens.set(did, (token = tokenFor(did)));
  return token;
}

/**
 * A client acting as `did` (null: no Authorization header) against a URL or an in-process app. `options` override
 * the rest: `retry` to allow retries (default: one attempt), `fetch` to watch or cut requests.
 */
export function clientFor(target: string | Hono, did: string | null, options: Partial<ClientOptions> = {}): Client {
  const inProcess = typeof target === "string" ? undefined : target;
  return createClient({
    service: inProcess ? "http://app.test" : (target as string),
    ...(did !== null && { token: () => cachedToken(did) }),
    ...(inProcess && { fetch: async (request: Request) => inProcess.fetch(request) }),
    ...options,
    retry: { maxAttempts: 1, ...options.retry },
  });
}

/** An answer or the XRPC error it was, for tests that assert either: `{status, data}` or `{status, error, message}`. */
export type Outcome<T> =
  | { status: number; data: T; replayed: boolean; error?: undefined }
  | { status: number; error: string; message: string; retryAfter: number | undefined; data?: undefined };

/** Awaits a client call and gives its status whatever it was; anything but an XRPC answer (a lost connection) throws. */
export async function outcome<T>(call: Promise<Answer<T>>): Promise<Outcome<T>> {
  try {
    const { status, data, replayed } = await call;
    return { status, data, replayed };
  } catch (failure) {
    if (!(failure instanceof XrpcClientError)) throw failure;
    const { status, error, message, retryAfter } = failure;
    return { status, error, message, retryAfter };
  }
}
