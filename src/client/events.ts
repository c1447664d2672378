import type { MembershipPayload } from "../services/events.js";
import type { MessageView } from "../services/messages.js";
import { send, type Transport } from "./call.js";
import { sleep, withRetry } from "./retry.js";
import { readSse } from "./sse.js";
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
 * Follows streamConvoEvents until `signal` aborts: whenever the stream ends or the connection drops (a server
 * restart), it reconnects from the last event id it yielded, so every event comes once, in order. Reconnecting is
 * retried like a call, within the deadline; a refusal (403 once the caller was removed) ends the iterator with it.
 */
export async function* subscribe(
  transport: Transport,
  input: SubscribeInput,
  signal?: AbortSignal,
): AsyncGenerator<ConvoStreamEvent> {
  let cursor = input.cursor;
  while (!signal?.aborted) {
    const query = { convoId: input.convoId, cursor, deviceId: input.deviceId };
    let response: Response;
    try {
      response = await withRetry(
        // The attempt's signal would end the body with the deadline: the stream is held open by the caller's alone.
        () => send(transport, "streamConvoEvents", { query, headers: { Accept: "text/event-stream" } }, signal),
        transport.retry,
        signal,
      );
    } catch (error) {
      if (signal?.aborted) return;
      throw error;
    }
    let delivered = false;
    try {
      for await (const event of readSse(response.body!)) {
        const id = Number(event.id);
        // The stream's opening id: where it began, the place to resume from until its first event arrives.
        if (event.data === undefined) {
          if (Number.isSafeInteger(id)) cursor = id;
          continue;
        }
        if (event.event !== "info") cursor = id;
        delivered = true;
        yield { id, type: event.event, data: fromWire(JSON.parse(event.data)) } as ConvoStreamEvent;
      }
    } catch (error) {
      if (signal?.aborted) return;
      // Data that is not JSON is a server fault; any other failure is the connection dropping: reconnect.
      if (error instanceof SyntaxError) throw error;
    }
    // A stream that ended at once must not make this loop spin: wait a little before the next.
    if (!delivered) await sleep(transport.retry.baseDelayMs, signal).catch(() => {});
  }
}
