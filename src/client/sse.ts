import { ProtocolError } from "./errors.js";
import { MAX_EVENT_LENGTH } from "./limits.js";
import { guard } from "./signals.js";

/**
 * One Server-Sent Event as sent: its type, its data lines joined, its id if it had one. A block with an id and no
 * data (which SSE dispatches as no event, but takes as the last event id) comes with `data` undefined.
 */
export interface SseEvent {
  event: string;
  data: string | undefined;
  id: string | undefined;
}

export interface SseOptions {
  /** Cancels the body and ends the events (without an error) when it aborts. */
  signal?: AbortSignal;
  /** The body is cancelled (the events end) after this long without a byte (ms). */
  idleMs?: number;
  /** The most characters a line, or an event's lines together, may hold: more is a ProtocolError. */
  maxEventLength?: number;
}

/** Reads a text/event-stream body event by event; comments (keep-alives) are skipped. */
export async function* readSse(body: ReadableStream<Uint8Array>, options: SseOptions = {}): AsyncGenerator<SseEvent> {
  const { signal, idleMs, maxEventLength = MAX_EVENT_LENGTH } = options;
  const reader = body.getReader();
  const watch = guard(reader, signal, idleMs);
  const decoder = new TextDecoder();
  let line = "";
  let fields: string[] = [];
  let size = 0;
  // The chunk before ended in "\r": a "\n" opening this one belongs to that line end.
  let afterCr = false;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done || signal?.aborted) return;
      watch.touch();
      const text = decoder.decode(value, { stream: true });
      if (text === "") continue;
      // Only the new text is scanned for line ends, so a long line costs what it holds (not its square).
      let start = afterCr && text.startsWith("\n") ? 1 : 0;
      afterCr = false;
      for (const end of text.matchAll(/\r\n|\r|\n/g)) {
        if (end.index < start) continue;
        line += text.slice(start, end.index);
        start = end.index + end[0].length;
        if (line !== "") {
          size += line.length;
          if (size > maxEventLength)
            throw new ProtocolError(`an event stream event is over ${maxEventLength} characters`);
          fields.push(line);
          line = "";
          continue;
        }
        const event = parseEvent(fields);
        fields = [];
        size = 0;
        if (event) yield event;
        if (signal?.aborted) return;
      }
      afterCr = text.endsWith("\r");
      line += text.slice(start);
      if (size + line.length > maxEventLength)
        throw new ProtocolError(`an event stream line is over ${maxEventLength} characters`);
    }
  } finally {
    watch.dispose();
    await reader.cancel().catch(() => {});
  }
}

function parseEvent(lines: string[]): SseEvent | undefined {
  let event = "message";
  let id: string | undefined;
  const data: string[] = [];
  for (const line of lines) {
    if (line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") event = value;
    else if (field === "data") data.push(value);
    else if (field === "id") id = value;
  }
  if (data.length) return { event, data: data.join("\n"), id };
  return id === undefined ? undefined : { event, data: undefined, id };
}
