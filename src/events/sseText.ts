import type { ConvoEvent } from "../services/events.js";

/** Events as Server-Sent Events bytes, end to end, and where each one's bytes end. */
export interface SseEvents {
  bytes: Uint8Array;
  /** `ends[i]` is the offset just past event i: `bytes.subarray(0, ends[i])` is the events up to and including it. */
  ends: number[];
}

const encoder = new TextEncoder();

/** A comment line: proxies see traffic, clients ignore it. */
export const sseComment = (text: string): Uint8Array => encoder.encode(`: ${text}\n\n`);

/**
 * What opens a stream: a comment, and the stream's starting cursor as an `id` with no data. SSE dispatches no event
 * for it, but it is the client's last event id from then on: a client that reconnects before the first event (an
 * EventSource, the typed client) resumes from where the stream began instead of from whatever is newest then.
 */
export const sseOpen = (cursor: number): Uint8Array => encoder.encode(`: open\nid: ${cursor}\n\n`);

/** One event of `type` (JSON `data`) with the cursor `id`. */
export const sseEvent = (type: string, id: number, data: unknown): Uint8Array =>
  encoder.encode(eventText(type, id, data));

/**
 * The events of a page, encoded once: every stream that sends them sends these same bytes (the id,
 * event type and data of an event are the same for every reader), in one write.
 */
export function encodeEvents(events: readonly ConvoEvent[]): SseEvents {
  const parts = events.map((event) =>
    encoder.encode(eventText(event.kind, event.seq, event.kind === "message" ? event.message : event.membership)),
  );
  const bytes = new Uint8Array(parts.reduce((total, part) => total + part.byteLength, 0));
  const ends: number[] = [];
  let offset = 0;
  for (const part of parts) {
    bytes.set(part, offset);
    offset += part.byteLength;
    ends.push(offset);
  }
  return { bytes, ends };
}

/** JSON has no raw line breaks, so the data is one `data:` line. */
function eventText(type: string, id: number, data: unknown): string {
  return `event: ${type}\ndata: ${JSON.stringify(data)}\nid: ${id}\n\n`;
}
