/**
 * A small raw Server-Sent Events reader for the tests that assert a stream's exact behaviour (what the typed
 * client's `streamConvoEvents` hides on purpose): reads a response body (from fetch or `app.request`) event by
 * event with its id, counts the comments (the opening one, keep-alives) in between, and resolves an opened stream
 * only once the server's opening comment arrived, so a test knows the stream is live before it writes. Also used
 * by test/devices (`opened`, `OpenStream`). A test that only needs to receive a conversation's events uses the
 * typed client's `streamConvoEvents` instead.
 */
import { tokenFor } from "../helpers/context.js";

export interface SseEvent {
  event: string;
  id: string | undefined;
  data: string;
}

/** A parsed `message` or `membership` event: its cursor and its JSON data. */
export interface StreamEvent {
  cursor: number;
  event: string;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  data: any;
}

export class SseReader {
  /** The comment lines read so far (`: open`, `: keep-alive`). */
  readonly comments: string[] = [];
  /** The last `id` read, an event's or the stream's opening one (its starting cursor). */
  lastEventId: string | undefined;
  private readonly reader: ReadableStreamDefaultReader<Uint8Array>;
  private readonly decoder = new TextDecoder();
  private buffer = "";
  private ended = false;

  constructor(body: ReadableStream<Uint8Array>) {
    this.reader = body.getReader();
  }

  /** The next event, or undefined when the server ended the stream. */
  async next(): Promise<SseEvent | undefined> {
    for (;;) {
      const block = await this.block();
      if (block === undefined) return undefined;
      const event = this.parse(block);
      if (event) return event;
    }
  }

  /** The next event with its id as a number and its data parsed. */
  async nextParsed(): Promise<StreamEvent | undefined> {
    const event = await this.next();
    return event && { cursor: Number(event.id), event: event.event, data: JSON.parse(event.data) };
  }

  /** Reads `count` events (fewer if the stream ends first). */
  async take(count: number): Promise<StreamEvent[]> {
    const events: StreamEvent[] = [];
    while (events.length < count) {
      const event = await this.nextParsed();
      if (!event) break;
      events.push(event);
    }
    return events;
  }

  /** Reads until `count` comments have arrived in all; false if the stream ended first. */
  async untilComments(count: number): Promise<boolean> {
    while (this.comments.length < count) {
      const block = await this.block();
      if (block === undefined) return false;
      if (this.parse(block)) throw new Error(`an event arrived while waiting for comments: ${block}`);
    }
    return true;
  }

  /** Disconnects. */
  async cancel(): Promise<void> {
    await this.reader.cancel().catch(() => {});
  }

  /** The next blank-line-terminated block of lines. */
  private async block(): Promise<string | undefined> {
    for (;;) {
      const end = this.buffer.indexOf("\n\n");
      if (end >= 0) {
        const block = this.buffer.slice(0, end);
        this.buffer = this.buffer.slice(end + 2);
        return block;
      }
      if (this.ended) return undefined;
      const { done, value } = await this.reader.read();
      if (done) this.ended = true;
      else this.buffer += this.decoder.decode(value, { stream: true });
    }
  }

  private parse(block: string): SseEvent | undefined {
    let event = "message";
    let id: string | undefined;
    const data: string[] = [];
    for (const line of block.split("\n")) {
      if (line.startsWith(":")) {
        this.comments.push(line.slice(1).trim());
        continue;
      }
      const colon = line.indexOf(":");
      const name = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (name === "event") event = value;
      else if (name === "id") id = value;
      else if (name === "data") data.push(value);
    }
    if (id !== undefined) this.lastEventId = id;
    // As SSE: a block without data is no event (the stream's opening id only sets the last event id).
    return data.length ? { event, id, data: data.join("\n") } : undefined;
  }
}

export interface StreamRequest {
  convoId: string;
  cursor?: number;
  lastEventId?: number | string;
}

export function streamPath({ convoId, cursor }: StreamRequest): string {
  const search = new URLSearchParams({ convoId });
  if (cursor !== undefined) search.set("cursor", String(cursor));
  return `/xrpc/blue.catbird.mls.streamConvoEvents?${search}`;
}

export async function streamHeaders(
  did: string,
  request: StreamRequest,
  secret?: string,
): Promise<Record<string, string>> {
  const headers: Record<string, string> = { Authorization: `Bearer ${await tokenFor(did, secret ? { secret } : {})}` };
  if (request.lastEventId !== undefined) headers["Last-Event-ID"] = String(request.lastEventId);
  return headers;
}

export interface OpenStream {
  status: number;
  response: Response;
  /** Present when the server answered 200 with an event stream; reads past the opening comment. */
  events?: SseReader;
  close(): Promise<void>;
}

/** Opens a stream over real HTTP; with a 200 it resolves once the server's opening comment arrived. */
export async function openStream(
  baseUrl: string,
  did: string,
  request: StreamRequest,
  secret?: string,
): Promise<OpenStream> {
  const abort = new AbortController();
  const response = await fetch(`${baseUrl}${streamPath(request)}`, {
    headers: await streamHeaders(did, request, secret),
    signal: abort.signal,
  });
  return opened(response, () => abort.abort());
}

/** The same over an in-process response (`app.request`). */
export async function opened(response: Response, abort: () => void = () => {}): Promise<OpenStream> {
  const isStream = response.status === 200 && response.headers.get("Content-Type")?.startsWith("text/event-stream");
  const events = isStream && response.body ? new SseReader(response.body) : undefined;
  if (events && !(await events.untilComments(1))) throw new Error("the stream ended before it opened");
  return {
    status: response.status,
    response,
    events,
    async close() {
      await events?.cancel();
      abort();
    },
  };
}
