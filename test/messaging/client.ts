/**
 * The messaging, roster, devices and key package tests' clients. `Api` is the typed client (src/client, one attempt
 * per call) over an in-process app or a server's URL, for the normal API; `Xrpc` is a raw XRPC client over
 * `app.request(...)`, for malformed or raw requests only (bad input, exact body text or size, headers, a request
 * without an idempotency key). Every answer of either is checked for what the contract promises of any answer:
 * never a 5xx, and an error body of exactly {error, message}.
 */
import type { Hono } from "hono";
import { randomBytes as nodeRandomBytes } from "node:crypto";
import { expect } from "vitest";
import {
  XrpcClientError,
  type Answer,
  type Client,
  type ClientOptions,
  type ConvoStreamEvent,
  type Input,
  type JsonMethodName,
  type Output,
} from "mls-delivery-service/client";
import type { Database } from "../../src/db/driver.js";
import { randomGroupId, utf8 } from "../helpers/context.js";
import {
  cachedToken,
  checkAnswer,
  checkedFetch,
  clientFor,
  expectErrorShape,
  outcome,
  refusal,
  type Outcome,
} from "../helpers/client.js";

export const SUITE = "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519";
const XRPC = "/xrpc/blue.catbird.mls.";

/** Reply bodies are JSON whose shape each test asserts itself. */
export type Json = any;

export interface Reply {
  status: number;
  body: Json;
  headers: Headers;
}

/** A reply as the app sent it: with the body's exact text too. */
export interface SentReply extends Reply {
  text: string;
}

/** Who calls: a DID (a valid dev token for it), or null for no Authorization header at all. */
export type Caller = string | null;

export type Params = Record<string, string | number | (string | number)[] | undefined>;

export { checkedFetch, expectErrorShape };

export class Xrpc {
  constructor(readonly app: Hono) {}

  /** A procedure; `body` is sent as JSON unless it is already a string (raw text, for malformed bodies). */
  async post(caller: Caller, method: string, body: unknown, headers: Record<string, string> = {}): Promise<SentReply> {
    return this.send(`${XRPC}${method}`, {
      method: "POST",
      headers: { "Content-Type": "application/json", ...(await this.auth(caller)), ...headers },
      body: typeof body === "string" ? body : JSON.stringify(body),
    });
  }

  /** A query; array values repeat the parameter. */
  async get(caller: Caller, method: string, params: Params = {}): Promise<SentReply> {
    const search = new URLSearchParams();
    for (const [key, value] of Object.entries(params)) {
      if (value === undefined) continue;
      for (const item of Array.isArray(value) ? value : [value]) search.append(key, String(item));
    }
    return this.send(`${XRPC}${method}?${search}`, { headers: await this.auth(caller) });
  }

  private async auth(caller: Caller): Promise<Record<string, string>> {
    return caller === null ? {} : { Authorization: `Bearer ${await cachedToken(caller)}` };
  }

  private async send(path: string, init: RequestInit): Promise<SentReply> {
    const res = await this.app.request(path, init);
    const { text, body } = await checkAnswer(res, `${init.method ?? "GET"} ${path.slice(0, 200)}`);
    return { status: res.status, body: body as Json, headers: res.headers, text };
  }

  /** Creates a conversation (through the typed client: it is set-up, not input under test) and returns its id. */
  createConvo(creator: string, members: string[] = [], extra: Partial<Input<"createConvo">> = {}): Promise<string> {
    return new Api(this.app).createConvo(creator, members, extra);
  }
}

/** The typed client over an in-process app, one per caller (a DID, or null for no Authorization header). */
export class Api {
  private readonly clients = new Map<Caller, Client>();
  /** `target`: an in-process app, or a server's URL (real HTTP); `options` as `clientFor` takes them. */
  constructor(
    readonly target: Hono | string,
    private readonly options: Partial<ClientOptions> = {},
  ) {}

  /**
   * The typed client acting as `caller`: one attempt per call, every answer checked (`checkedFetch`: never a 5xx,
   * an error body of exactly {error, message}; an event stream, its status only).
   */
  as(caller: Caller): Client {
    let client = this.clients.get(caller);
    if (!client) {
      client = clientFor(this.target, caller, { fetch: checkedFetch(this.target), ...this.options });
      this.clients.set(caller, client);
    }
    return client;
  }

  /** `method` called through the typed client as `caller`, answered as an outcome (an answer or the refusal). */
  call<N extends JsonMethodName>(caller: Caller, method: N, input: Input<N>): Promise<Outcome<Output<N>>> {
    const typedMethod = this.as(caller)[method] as (input: Input<N>) => Promise<Answer<Output<N>>>;
    return outcome(typedMethod(input));
  }

  /** Creates a conversation and returns its id. */
  async createConvo(
    creator: string,
    members: string[] = [],
    extra: Partial<Input<"createConvo">> = {},
  ): Promise<string> {
    const { data } = await this.as(creator).createConvo({
      groupId: randomGroupId(),
      cipherSuite: SUITE,
      initialMembers: members,
      ...extra,
    });
    return data.id;
  }
}

/** The first `count` events of a conversation's stream through the typed client; then the stream is closed. */
export async function firstEvents(
  client: Client,
  input: Parameters<Client["streamConvoEvents"]>[0],
  count: number,
): Promise<ConvoStreamEvent[]> {
  const stop = new AbortController();
  const events: ConvoStreamEvent[] = [];
  try {
    for await (const event of client.streamConvoEvents(input, stop.signal)) {
      events.push(event);
      if (events.length >= count) break;
    }
  } finally {
    stop.abort();
  }
  return events;
}

/**
 * Opens a conversation's stream through the typed client and closes it again: 200 once the stream's answer came,
 * or the refusal it was.
 */
export async function streamOutcome(
  api: Api,
  caller: Caller,
  input: Parameters<Client["streamConvoEvents"]>[0],
): Promise<Outcome<undefined>> {
  let opened!: (status: number) => void;
  const answered = new Promise<number>((resolve) => (opened = resolve));
  const stop = new AbortController();
  const checked = checkedFetch(api.target);
  const client = clientFor(api.target, caller, {
    fetch: async (request) => {
      const response = await checked(request);
      if (!response.ok || !response.body) return response;
      opened(response.status);
      // An in-process stream does not end with the request's signal: closing it is this pipe's, on `stop`.
      const pipe = new TransformStream<Uint8Array, Uint8Array>();
      response.body.pipeTo(pipe.writable, { signal: stop.signal }).catch(() => {});
      return new Response(pipe.readable, response);
    },
  });
  const first = client.streamConvoEvents(input, stop.signal).next();
  try {
    return await Promise.race([
      answered.then((status) => ({ status, data: undefined, replayed: false })),
      first.then(
        () => new Promise<never>(() => {}),
        (failure: unknown) => refusal(failure),
      ),
    ]);
  } finally {
    stop.abort();
    await first.catch(() => {});
  }
}

/** Expects a client call to be answered 200; answers the answer. */
export async function ok<T>(call: Promise<Answer<T>>): Promise<Answer<T>> {
  const answer = await call;
  expect(answer.status, JSON.stringify(answer.data)).toBe(200);
  return answer;
}

/** Expects a client call to be refused with exactly this status (and error name); answers the refusal. */
export async function expectRefusal(
  call: Promise<Answer<unknown>>,
  status: number,
  error?: string,
): Promise<XrpcClientError> {
  const failure = await call.then(
    (answer) => expect.fail(`expected ${status} ${error ?? ""}, got ${answer.status}: ${JSON.stringify(answer.data)}`),
    (failure: unknown) => failure,
  );
  if (!(failure instanceof XrpcClientError)) throw failure;
  expect(failure.status, `${failure.error}: ${failure.message}`).toBe(status);
  if (error !== undefined) expect(failure.error, failure.message).toBe(error);
  return failure;
}

/** Expects exactly this status (and error name, for errors) of an outcome, with the rest in the failure message. */
export function expectOutcome(result: Outcome<unknown>, status: number, error?: string): void {
  expect(result.status, JSON.stringify(result)).toBe(status);
  if (error !== undefined) expect(result.error, JSON.stringify(result)).toBe(error);
}

export { outcome, type Outcome };

/** The answer of an outcome that must be one. */
export function answerOf<T>(result: Outcome<T>): { status: number; data: T; replayed: boolean } {
  if (result.error !== undefined) expect.fail(`expected an answer, got ${JSON.stringify(result)}`);
  return result;
}

/** The refusal of an outcome that must be one. */
export function refusalOf(result: Outcome<unknown>): {
  status: number;
  error: string;
  message: string;
  retryAfter?: number;
} {
  if (result.error === undefined) expect.fail(`expected a refusal, got ${JSON.stringify(result)}`);
  return result;
}

/** A raw reply as an outcome, for tests that set raw requests beside client calls. */
export function rawOutcome(reply: Reply): Outcome<Json> {
  if (reply.status < 400) {
    return { status: reply.status, data: reply.body, replayed: reply.headers.get("Idempotent-Replayed") === "true" };
  }
  const retryAfter = reply.headers.get("Retry-After");
  return {
    status: reply.status,
    error: reply.body.error,
    message: reply.body.message,
    retryAfter: retryAfter === null ? undefined : Number(retryAfter),
  };
}

/** A refusal's message (undefined for an answer, which then fails any expectation on the message). */
export const messageOf = (result: Outcome<unknown>): string | undefined =>
  result.error === undefined ? undefined : result.message;

export { utf8 };
/** The text of UTF-8 bytes. */
export const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

export const base64 = (bytes: Uint8Array | string) =>
  Buffer.from(typeof bytes === "string" ? new TextEncoder().encode(bytes) : bytes).toString("base64");

export const randomBytes = (length: number) => new Uint8Array(nodeRandomBytes(length));

/** Expects exactly this status (and error name, for errors), with the body in the failure message. */
export function expectReply(reply: Reply, status: number, error?: string): void {
  expect(reply.status, JSON.stringify(reply.body)).toBe(status);
  if (error !== undefined) expect(reply.body.error).toBe(error);
}

export interface MessageRow {
  id: string;
  seq: number;
  sender_did: string;
  message_type: "app" | "commit";
  epoch: number;
  ciphertext: Uint8Array;
  created_at: Date;
}

/** The conversation's stored messages (application and commit) in seq order, straight from the table. */
export function storedMessages(db: Database, convoId: string): Promise<MessageRow[]> {
  return db.query<MessageRow>(
    `SELECT id, seq, sender_did, message_type, epoch, ciphertext, created_at FROM messages WHERE convo_id = $1 ORDER BY seq`,
    [convoId],
  );
}

/** Asserts every element is at least the one before it. */
export function expectNonDecreasing(times: Date[]): void {
  for (let i = 1; i < times.length; i++) {
    expect(times[i]!.getTime(), `createdAt at position ${i}`).toBeGreaterThanOrEqual(times[i - 1]!.getTime());
  }
}

export const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

/**
 * Stores commits for the conversation's next epochs the way an accepted commit is stored (next seq,
 * epoch + 1, a `message` event), straight in SQL, so the read path is tested apart from commit validation.
 */
export async function storeCommits(db: Database, convoId: string, sender: string, commits: Uint8Array[]) {
  for (const bytes of commits) {
    await db.query(
      `WITH conv AS (
         UPDATE conversations SET epoch = epoch + 1, next_seq = next_seq + 1, next_event_seq = next_event_seq + 1
          WHERE id = $1 RETURNING epoch - 1 AS epoch, next_seq - 1 AS seq, next_event_seq - 1 AS event_seq
       ), commit_row AS (
         INSERT INTO messages (id, convo_id, seq, sender_did, message_type, epoch, ciphertext, created_at)
         SELECT gen_random_uuid()::text, $1, conv.seq, $2, 'commit', conv.epoch, $3, now() FROM conv
       )
       INSERT INTO events (convo_id, seq, kind, message_seq, created_at) SELECT $1, conv.event_seq, 'message', conv.seq, now() FROM conv`,
      [convoId, sender, bytes],
    );
  }
}
