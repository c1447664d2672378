/**
 * A small XRPC client over fetch for the battle tests: real HTTP to a real server. Every call has a
 * client-side timeout, so a server that hangs fails the test instead of hanging it.
 */
import { tokenFor } from "../helpers/context.js";

export const SUITE = "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519";
const XRPC = "/xrpc/blue.catbird.mls.";
const DEFAULT_TIMEOUT_MS = 20_000;

/** Reply bodies are JSON whose shape each test asserts itself. */
export type Json = any;

export interface Reply {
  status: number;
  body: Json;
  /** True when the server answered from its idempotency store (`Idempotent-Replayed: true`). */
  replayed: boolean;
}

export interface CallOptions {
  idempotencyKey?: string;
  timeoutMs?: number;
}

const tokens = new Map<string, Promise<string>>();
const bearer = (did: string) => {
  let token = tokens.get(did);
  if (!token) tokens.set(did, (token = tokenFor(did)));
  return token;
};

/** Any failure to get an HTTP answer at all (refused, reset, timed out), with what happened. */
export class NoAnswerError extends Error {
  override name = "NoAnswerError";
  constructor(
    readonly timedOut: boolean,
    cause: unknown,
  ) {
    super(timedOut ? "no answer within the client timeout" : `no answer: ${describe(cause)}`, { cause });
  }
}

function describe(error: unknown): string {
  const cause = (error as { cause?: { code?: string } })?.cause;
  return cause?.code ?? (error instanceof Error ? error.message : String(error));
}

export class BattleClient {
  /** `timeoutMs`: how long any call may wait for its answer before it counts as no answer. */
  constructor(
    readonly baseUrl: string,
    private readonly timeoutMs = DEFAULT_TIMEOUT_MS,
  ) {}

  /** A procedure (POST, JSON body) as `did`. */
  async post(did: string, method: string, body: unknown, options: CallOptions = {}): Promise<Reply> {
    const headers: Record<string, string> = {
      Authorization: `Bearer ${await bearer(did)}`,
      "Content-Type": "application/json",
    };
    if (options.idempotencyKey) headers["Idempotency-Key"] = options.idempotencyKey;
    return this.send(`${XRPC}${method}`, { method: "POST", headers, body: JSON.stringify(body) }, options);
  }

  /** A query (GET) as `did`. */
  async get(did: string, method: string, params: Record<string, string>, options: CallOptions = {}): Promise<Reply> {
    const search = new URLSearchParams(params);
    const headers = { Authorization: `Bearer ${await bearer(did)}` };
    return this.send(`${XRPC}${method}?${search}`, { headers }, options);
  }

  /** GET /health/ready: true when the server says it can reach its database. */
  async ready(): Promise<boolean> {
    try {
      return (await this.send("/health/ready", {}, { timeoutMs: 5_000 })).status === 200;
    } catch {
      return false;
    }
  }

  private async send(path: string, init: RequestInit, { timeoutMs = this.timeoutMs }: CallOptions): Promise<Reply> {
    let response: Response;
    let text: string;
    try {
      response = await fetch(`${this.baseUrl}${path}`, { ...init, signal: AbortSignal.timeout(timeoutMs) });
      text = await response.text();
    } catch (error) {
      throw new NoAnswerError((error as Error)?.name === "TimeoutError", error);
    }
    let body: Json = text;
    try {
      body = JSON.parse(text);
    } catch {
      // not JSON: keep the text
    }
    return { status: response.status, body, replayed: response.headers.get("Idempotent-Replayed") === "true" };
  }
}

/** Base64 of a UTF-8 string: test ciphertexts that say whose and which message they are. */
export const base64 = (text: string) => Buffer.from(text).toString("base64");

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** One try of a retried call: the server's answer, or no answer at all. */
export type Attempt = { reply: Reply } | { noAnswer: NoAnswerError };

/** Worth another try: no answer, a 5xx, or 409 IdempotencyKeyInUse (the first request is still running). */
const retryable = (attempt: Attempt) =>
  "noAnswer" in attempt || attempt.reply.status >= 500 || attempt.reply.body?.error === "IdempotencyKeyInUse";

/**
 * A client that retries on any failure until it gets a final answer (2xx, or a 4xx that retrying cannot
 * change), recording every attempt in `attempts`. Gives up after `deadlineMs` so a broken server fails the
 * test instead of spinning forever.
 */
export async function untilAnswered(
  call: () => Promise<Reply>,
  attempts: Attempt[],
  { pauseMs = 50, deadlineMs = 45_000 } = {},
): Promise<Reply> {
  const deadline = Date.now() + deadlineMs;
  for (let tries = 1; ; tries++) {
    const attempt: Attempt = await call().then(
      (reply) => ({ reply }),
      (error: unknown) => {
        if (error instanceof NoAnswerError) return { noAnswer: error };
        throw error;
      },
    );
    attempts.push(attempt);
    if (!retryable(attempt) && "reply" in attempt) return attempt.reply;
    if (Date.now() > deadline) {
      const last =
        "reply" in attempt ? `${attempt.reply.status} ${JSON.stringify(attempt.reply.body)}` : attempt.noAnswer.message;
      throw new Error(`still no final answer after ${deadlineMs} ms (${tries} tries; the last: ${last})`);
    }
    await sleep(pauseMs);
  }
}

/** Resolves once `condition` holds; rejects after `timeoutMs`. */
export async function waitFor(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}
