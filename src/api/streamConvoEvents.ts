import { streamSSE } from "hono/streaming";
import { z } from "zod";
import { followConvo } from "../events/convoStream.js";
import { invalidRequest } from "../errors.js";
import * as schemas from "../schemas.js";
import { eventHead } from "../services/events.js";
import { query } from "../xrpc.js";

const cursor = z
  .string()
  .regex(/^\d{1,15}$/, "cursor must be an event id")
  .transform(Number);

/**
 * Server-Sent Events for one conversation, members only. Each event's id is its cursor. Without a
 * cursor the stream starts at the newest event (everything committed after the response head is
 * sent); with one it replays every later event from the database first. `Last-Event-ID` wins over
 * `cursor`: an EventSource reconnects to the same URL with the newer position in that header.
 */
export default query({
  name: "streamConvoEvents",
  input: z.object({ convoId: schemas.convoId, cursor: cursor.optional() }),
  async handler(input, { app, caller, header, c }) {
    const lastEventId = header("Last-Event-ID") || undefined;
    const resume = lastEventId === undefined ? input.cursor : cursor.safeParse(lastEventId).data;
    if (lastEventId !== undefined && resume === undefined) throw invalidRequest("Last-Event-ID must be an event id");
    const head = await eventHead(app.db, input.convoId, caller, resume);
    if (resume !== undefined && resume > head) throw invalidRequest("cursor is ahead of this conversation's events");
    const { config, events, logger } = app;
    c.header("X-Accel-Buffering", "no");
    return streamSSE(c, (stream) =>
      followConvo(stream, {
        db: app.db,
        bus: events,
        logger,
        convoId: input.convoId,
        reader: caller,
        cursor: resume ?? head,
        keepAliveMs: config.EVENTS_KEEPALIVE_MS,
        maxBacklog: config.EVENTS_MAX_BACKLOG,
        writeTimeoutMs: config.EVENTS_WRITE_TIMEOUT_MS,
      }),
    );
  },
});
