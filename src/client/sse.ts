/**
 * One Server-Sent Event as sent: its type, its data lines joined, its id if it had one. A block with an id and no
 * data (which SSE dispatches as no event, but takes as the last event id) comes with `data` undefined.
 */
export interface SseEvent {
  event: string;
  data: string | undefined;
  id: string | undefined;
}

/** Reads a text/event-stream body event by event; comments (keep-alives) are skipped. */
export async function* readSse(body: ReadableStream<Uint8Array>): AsyncGenerator<SseEvent> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let fields: string[] = [];
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (!done) buffer += decoder.decode(value, { stream: true });
      // A final "\r" may be the first half of a "\r\n": the next chunk tells, or the end.
      const complete = buffer.endsWith("\r") && !done ? buffer.length - 1 : buffer.length;
      const lines = buffer.slice(0, complete).split(/\r\n|\r|\n/);
      buffer = lines.pop()! + buffer.slice(complete);
      for (const line of lines) {
        if (line !== "") {
          fields.push(line);
          continue;
        }
        const event = parseEvent(fields);
        fields = [];
        if (event) yield event;
      }
      if (done) return;
    }
  } finally {
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
