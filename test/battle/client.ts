/**
 * Raw HTTP requests only: a bare XRPC client over fetch, for what the typed client (src/client, see ./calls.ts)
 * hides on purpose: many identical requests racing with one idempotency key, whose individual raw statuses and
 * `Idempotent-Replayed` flags are the point (battle tests 1 and 10); requests sent with no idempotency key at all
 * (natural idempotency, battle tests 2 and 5); and /health/ready, which is no XRPC method. Also the roster tests'
 * racing commits over two servers (test/roster/servers.ts, lockOrderStress.test.ts). Everything else goes
 * through the typed client. Every request has a client-side timeout, so a server that hangs fails the test
 * instead of hanging it.
 */
import { cachedToken, jsonOrText } from "../helpers/client.js";

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

/** What a failure to get an answer was: the network's error code (ECONNREFUSED, ECONNRESET...), else its message. */
export function describe(error: unknown): string {
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
      Authorization: `Bearer ${await cachedToken(did)}`,
      "Content-Type": "application/json",
    };
    if (options.idempotencyKey) headers["Idempotency-Key"] = options.idempotencyKey;
    return this.send(`${XRPC}${method}`, { method: "POST", headers, body: JSON.stringify(body) }, options);
  }

  /** A query (GET) as `did`. */
  async get(did: string, method: string, params: Record<string, string>, options: CallOptions = {}): Promise<Reply> {
    const search = new URLSearchParams(params);
    const headers = { Authorization: `Bearer ${await cachedToken(did)}` };
    return this.send(`${XRPC}${method}?${search}`, { headers }, options);
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
    return {
      status: response.status,
      body: jsonOrText(text),
      replayed: response.headers.get("Idempotent-Replayed") === "true",
    };
  }
}

/** Base64 of a UTF-8 string: test ciphertexts that say whose and which message they are. */
export const base64 = (text: string) => Buffer.from(text).toString("base64");

/** GET /health/ready of the server at `url`: true when it says it can reach its database. */
export async function isReady(url: string): Promise<boolean> {
  try {
    const response = await fetch(`${url}/health/ready`, { signal: AbortSignal.timeout(5_000) });
    await response.text();
    return response.status === 200;
  } catch {
    return false;
  }
}
