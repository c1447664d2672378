import type { MembershipPayload } from "../services/events.js";
import type { MessageView } from "../services/messages.js";
import { send, type Transport } from "./call.js";
import { ProtocolError } from "./errors.js";
import { backoff, sleep, withRetry } from "./retry.js";
import { readSse, type SseEvent } from "./sse.js";
import type { FromWire, Input } from "./types.js";
import { fromWire } from "./wire.js";

/** An event of a conversation's stream; `id` is its cursor. `info` is a notice (a slow consumer's skip). */
export type ConvoStreamEvent =
  | { id: number; type: "message"; data: FromWire<MessageView> }
  | { id: number; type: "membership"; data: MembershipPayload }
  | { id: number; type: "info"; data: { type: string; skipped?: number } };

/**
 * `cursor`: start after this event id (0: everything since the caller joined); without it the stream starts at the
 * newest event (and resumes from there if the connection drops before the first event arrives).
 */
export type SubscribeInput = Input<"streamConvoEvents">;

/**
 * Follows streamConvoEvents until `signal` aborts: whenever the stream ends, the connection drops (a server
 * restart) or the stream is idle past `transport.streamIdleMs` (the server sends keep-alives), it reconnects from
 * the last event id it yielded, so every event comes once, in order. Reconnecting is retried like a call, within
 * the deadline; a refusal (403 once the caller was removed) ends the iterator with it, and so does a ProtocolError
 * (an answer that is not an event stream, an event without a numeric id or with data that does not decode).
 */
export async function* subscribe(
  transport: Transport,
  input: SubscribeInput,
  signal?: AbortSignal,
): AsyncGenerator<ConvoStreamEvent> {
  let cursor = input.cursor;
  // Connections in a row that delivered nothing: each waits twice as long before the next.
  let empty = 0;
  while (!signal?.aborted) {
    const query = { convoId: input.convoId, cursor, deviceId: input.deviceId };
    let response: Response;
    try {
      // The attempt's signal bounds the connect (and its answer's headers) by the deadline; the body is held open by
      // the caller's signal alone (the attempt's is unlinked once withRetry returns).
      response = await withRetry(
        async (attempt) => {
          const answer = await send(transport, "streamConvoEvents", { query, headers: SSE_HEADERS }, attempt);
          if (!answer.headers.get("Content-Type")?.startsWith("text/event-stream")) {
            void answer.body?.cancel().catch(() => {});
            throw new ProtocolError(
              `streamConvoEvents answered ${answer.headers.get("Content-Type")}, not an event stream`,
            );
          }
          return answer;
        },
        transport.retry,
        signal,
      );
    } catch (error) {
      if (signal?.aborted) return;
      throw error;
    }
    let delivered = false;
    try {
      const events = readSse(response.body!, { signal, idleMs: transport.streamIdleMs });
      for await (const event of events) {
        const id = eventId(event);
        // The stream's opening id: where it began, the place to resume from until its first event arrives. It never
        // moves the cursor back (before events already yielded, which would then come again).
        if (event.data === undefined) {
          if (id !== undefined && (cursor === undefined || id > cursor)) cursor = id;
          continue;
        }
        const decoded = decode(event, id);
        // Only an event that moves the cursor counts as progress: a stream of `info` alone reconnects with backoff.
        if (event.event !== "info") {
          // An id at or before the cursor was yielded already, or precedes the stream's start: skipped, as no progress.
          if (cursor !== undefined && decoded.id <= cursor) continue;
          cursor = decoded.id;
          delivered = true;
        }
        yield decoded;
        if (signal?.aborted) return;
      }
    } catch (error) {
      if (signal?.aborted) return;
      // A server fault ends the iterator; any other failure is the connection dropping: reconnect.
      if (error instanceof ProtocolError) throw error;
    }
    empty = delivered ? 0 : empty + 1;
    // A stream that ended at once must not make this loop spin: wait, longer each time, before the next.
    if (empty > 0) await sleep(reconnectDelay(empty, transport), signal).catch(() => {});
  }
}

const SSE_HEADERS = { Accept: "text/event-stream" };

/** The event's id as a cursor: decimal digits within a safe integer, else undefined. */
function eventId({ id }: SseEvent): number | undefined {
  return id !== undefined && /^\d{1,15}$/.test(id) ? Number(id) : undefined;
}

function decode(event: SseEvent, id: number | undefined): ConvoStreamEvent {
  if (id === undefined) throw new ProtocolError(`an event without a numeric id: ${event.id}`);
  try {
    return { id, type: event.event, data: fromWire(JSON.parse(event.data!)) } as ConvoStreamEvent;
  } catch (error) {
    // Not JSON (SyntaxError), or bytes that are not base64 (atob's DOMException).
    throw new ProtocolError(`event ${id} does not decode`, error);
  }
}

/** The wait after `empty` connections in a row that delivered nothing: a call's backoff, never past the deadline. */
const reconnectDelay = (empty: number, { retry }: Transport) =>
  backoff(empty - 1, undefined, { ...retry, maxDelayMs: Math.min(retry.maxDelayMs, retry.deadlineMs) });
