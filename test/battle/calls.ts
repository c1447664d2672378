/**
 * The typed client (src/client) as the battle tests use it: real HTTP to a real server process, one attempt per
 * call (test/helpers/client.ts), and a deadline on every call so a server that hangs fails the test instead of
 * hanging it. Retrying is the tests' own (`untilAnswered`), so that every attempt's answer is kept for the report
 * and the assertions.
 */
import { ConnectionLostError, type Answer, type Client } from "mls-delivery-service/client";
import { clientFor, jsonOrText, outcome, type Outcome } from "../helpers/client.js";
import { describe } from "./client.js";

/** How long any call may wait for its answer before it counts as no answer. */
export const DEADLINE_MS = 20_000;

/** A client acting as `did` against the server at `url`, one attempt per call, each within `deadlineMs`. */
export function battleClient(
  url: string,
  did: string,
  { deadlineMs = DEADLINE_MS, fetch }: { deadlineMs?: number; fetch?: (request: Request) => Promise<Response> } = {},
): Client {
  return clientFor(url, did, { retry: { deadlineMs }, ...(fetch && { fetch }) });
}

/** The UTF-8 bytes of a string: test ciphertexts that say whose and which message they are. */
export { utf8 } from "../helpers/context.js";

/** No HTTP answer at all: the connection was refused, reset or lost, or the call's deadline passed. */
export interface NoAnswer {
  timedOut: boolean;
  reason: string;
}

/** One try of a call: the server's answer (success or XRPC error), or no answer at all. */
export type Attempt<T> = { answer: Outcome<T> } | { noAnswer: NoAnswer };

/** Awaits one call: its answer whatever the status, or no answer; anything else (a bug in the test) throws. */
export async function attempt<T>(call: Promise<Answer<T>>): Promise<Attempt<T>> {
  try {
    return { answer: await outcome(call) };
  } catch (failure) {
    // A lost connection carries its cause's message: its reason is that cause's code, else that message.
    if (failure instanceof ConnectionLostError) {
      return { noAnswer: { timedOut: false, reason: describe(failure.cause) } };
    }
    if ((failure as Error)?.name === "TimeoutError") {
      return { noAnswer: { timedOut: true, reason: "no answer within the call's deadline" } };
    }
    throw failure;
  }
}

/** Worth another try: no answer, a 5xx, or 409 IdempotencyKeyInUse (the first request is still running). */
const retryable = (tried: Attempt<unknown>) =>
  "noAnswer" in tried || tried.answer.status >= 500 || tried.answer.error === "IdempotencyKeyInUse";

/**
 * Calls again on any failure until a final answer comes (2xx, or a 4xx that retrying cannot change), recording
 * every attempt in `attempts`. Gives up after `deadlineMs` so a broken server fails the test instead of spinning
 * forever. The caller passes the same idempotency key to every call.
 */
export async function untilAnswered<T>(
  call: () => Promise<Answer<T>>,
  attempts: Attempt<T>[],
  { pauseMs = 50, deadlineMs = 45_000 } = {},
): Promise<Outcome<T>> {
  const deadline = Date.now() + deadlineMs;
  for (let tries = 1; ; tries++) {
    const tried = await attempt(call());
    attempts.push(tried);
    if (!retryable(tried) && "answer" in tried) return tried.answer;
    if (Date.now() > deadline) {
      const last = "answer" in tried ? JSON.stringify(tried.answer) : tried.noAnswer.reason;
      throw new Error(`still no final answer after ${deadlineMs} ms (${tries} tries; the last: ${last})`);
    }
    await sleep(pauseMs);
  }
}

/**
 * A fetch for the typed client that passes every request on and keeps the raw body of every answer that is not
 * 2xx: the client reads only `error` and `message` from those, and some guarantees are about the whole body.
 */
export function errorBodies(): {
  bodies: { status: number; body: unknown }[];
  fetch: (request: Request) => Promise<Response>;
} {
  const bodies: { status: number; body: unknown }[] = [];
  return {
    bodies,
    fetch: async (request) => {
      const response = await globalThis.fetch(request);
      if (!response.ok) {
        const text = await response
          .clone()
          .text()
          .catch(() => undefined);
        bodies.push({ status: response.status, body: text === undefined ? undefined : jsonOrText(text) });
      }
      return response;
    },
  };
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Resolves once `condition` holds; rejects after `timeoutMs`. */
export async function waitFor(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}
