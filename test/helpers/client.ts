/**
 * The typed client (src/client) as the project's own tests use it, over real HTTP (a server's URL) or in process
 * (an app's `fetch`). One attempt per call unless a test asks for more: a test asserts what the server answered,
 * not what a retry made of it.
 */
import type { Hono } from "hono";
import { expect } from "vitest";
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
export function cachedToken(did: string): Promise<string> {
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
    return refusal(failure);
  }
}

/** A failed call as the refusal it was (`{status, error, message, retryAfter}`); anything but an XRPC error throws. */
export function refusal(failure: unknown): Extract<Outcome<never>, { error: string }> {
  if (!(failure instanceof XrpcClientError)) throw failure;
  const { status, error, message, retryAfter } = failure;
  return { status, error, message, retryAfter };
}

/** An answer's text as JSON, or the text itself when it is not JSON. */
export function jsonOrText(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** Expects an error answer's body to be exactly `{error, message}`, both strings. */
export function expectErrorShape(body: unknown): asserts body is { error: string; message: string } {
  expect(body).toBeTypeOf("object");
  expect(Object.keys(body as object).sort(), JSON.stringify(body)).toEqual(["error", "message"]);
  expect((body as { error: unknown }).error).toBeTypeOf("string");
  expect((body as { message: unknown }).message).toBeTypeOf("string");
}

/** `allow503`: a 503 (NotReady, a lost database) is an answer too, any other 5xx still fails; default: no 5xx. */
export interface CheckOptions {
  allow503?: boolean;
}

function expectStatus(status: number, what: string, { allow503 = false }: CheckOptions): void {
  if (!allow503) expect(status, what).toBeLessThan(500);
  else if (status >= 500) expect(status, what).toBe(503);
}

/**
 * Reads an answer (it consumes the body) and checks what the contract promises of any answer: no 5xx (but 503 with
 * `allow503`), a JSON body, and for an error exactly `{error, message}`. Gives the body's text and its JSON.
 */
export async function checkAnswer(
  response: Response,
  what: string,
  options: CheckOptions = {},
): Promise<{ text: string; body: unknown }> {
  const text = await response.text();
  expectStatus(response.status, `${what} → ${text.slice(0, 300)}`, options);
  const body: unknown = JSON.parse(text);
  if (response.status >= 400) expectErrorShape(body);
  return { text, body };
}

/**
 * A fetch for the typed client over an in-process app or a server's URL that checks every answer (`checkAnswer`; an
 * event stream: its status only) and passes it on. A failed check fails the call (the client reports it as a lost
 * connection, with the assertion as its cause).
 */
export function checkedFetch(
  target: Hono | string,
  options: CheckOptions = {},
): (request: Request) => Promise<Response> {
  return async (request) => {
    const response = await (typeof target === "string" ? fetch(request) : target.fetch(request));
    const what = `${request.method} ${new URL(request.url).pathname.slice(0, 200)}`;
    if (response.headers.get("Content-Type")?.startsWith("text/event-stream")) {
      expectStatus(response.status, what, options);
    } else {
      await checkAnswer(response.clone(), what, options);
    }
    return response;
  };
}
