/**
 * The typed client of the `blue.catbird.mls.*` API: one method per XRPC method, its input and answer types read from
 * the server's own definitions, procedures exactly-once by default (one idempotency key per call, retried with it).
 *
 * @example
 * const client = createClient({ service: "https://mls.example.com", token: () => serviceTokenFor("...") });
 * const { data: convo } = await client.createConvo({ groupId, cipherSuite });
 * const { data: sent, replayed } = await client.sendMessage({ convoId: convo.id, ciphertext, epoch: 0 });
 * for await (const event of client.streamConvoEvents({ convoId: convo.id, cursor: 0 }, signal)) console.log(event);
 */
import { call, type CallOptions, type Transport } from "./call.js";
import { subscribe, type ConvoStreamEvent, type SubscribeInput } from "./events.js";
import { KINDS, type JsonMethodName } from "./methods.js";
import { allMessages } from "./pages.js";
import { DEFAULT_RETRY, type RetryOptions } from "./retry.js";
import type { Answer, Input, Output } from "./types.js";
import { acceptWelcome, type WelcomeInput, type WelcomeOptions } from "./welcome.js";

export { ConnectionLostError, DeadlineError, ProtocolError, WelcomeConfirmError, XrpcClientError } from "./errors.js";

export type {
  Answer,
  CallOptions,
  WelcomeOptions,
  ConvoStreamEvent,
  Input,
  JsonMethodName,
  Output,
  RetryOptions,
  SubscribeInput,
};

export interface ClientOptions {
  /** The server's base URL. */
  service: string;
  /** The bearer token, asked for per request. */
  token?: () => Promise<string> | string;
  /** Default: the global fetch. Tests pass an in-process app: `(request) => app.fetch(request)`. */
  fetch?: (request: Request) => Response | Promise<Response>;
  /** Deadline and backoff of every call; each call may override `deadlineMs`. */
  retry?: Partial<RetryOptions>;
  /**
   * An open event stream silent this long (no event, no keep-alive) is reconnected (ms). Default 45 s: three of the
   * server's 15 s keep-alives (EVENTS_KEEPALIVE_MS).
   */
  streamIdleMs?: number;
}

/** Methods whose every input field is optional take no input at all. */
type Method<N extends JsonMethodName> =
  {} extends Input<N>
    ? (input?: Input<N>, options?: CallOptions) => Promise<Answer<Output<N>>>
    : (input: Input<N>, options?: CallOptions) => Promise<Answer<Output<N>>>;

export type Client = { [N in JsonMethodName]: Method<N> } & {
  /** streamConvoEvents, followed across disconnects and restarts (see `subscribe`). */
  streamConvoEvents(input: SubscribeInput, signal?: AbortSignal): AsyncGenerator<ConvoStreamEvent>;
  /** getMessages, page after page to the end. */
  allMessages(input: Parameters<typeof allMessages>[1], signal?: AbortSignal): ReturnType<typeof allMessages>;
  /** getWelcome, `process`, confirmWelcome (see `acceptWelcome`). */
  acceptWelcome<T>(
    input: WelcomeInput,
    process: (welcome: Uint8Array) => Promise<T> | T,
    options?: WelcomeOptions,
  ): Promise<T>;
};

export function createClient({
  service,
  token,
  fetch = (request) => globalThis.fetch(request),
  retry,
  streamIdleMs = 45_000,
}: ClientOptions): Client {
  const transport: Transport = { service, token, fetch, retry: { ...DEFAULT_RETRY, ...retry }, streamIdleMs };
  const methods = Object.fromEntries(
    Object.keys(KINDS).map((name) => [
      name,
      (input: object = {}, options?: CallOptions) => call(transport, name as JsonMethodName, input, options),
    ]),
  );
  const client: Client = {
    ...(methods as { [N in JsonMethodName]: Method<N> }),
    streamConvoEvents: (input, signal) => subscribe(transport, input, signal),
    allMessages: (input, signal) => allMessages(client, input, signal),
    acceptWelcome: (input, process, options) => acceptWelcome(client, input, process, options),
  };
  return client;
}
