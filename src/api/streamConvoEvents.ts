import type { Context } from "hono";
import { z } from "zod";
import { followConvo, type StreamConnection } from "../events/convoStream.js";
import { CHUNKED, EVENT_STREAM_HEADERS, EventStreamBody } from "../events/eventStreamBody.js";
import { invalidRequest, XrpcError } from "../errors.js";
import * as schemas from "../schemas.js";
import { IMPLICIT_DEVICE } from "../services/actingDevice.js";
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
 * A caller holds at most `EVENTS_MAX_STREAMS_PER_CALLER` streams per instance (then 429). With `deviceId` the
 * stream is that device's (registered, not revoked): it ends after the device's own removal or revocation.
 */
export default query({
  name: "streamConvoEvents",
  input: z.object({ convoId: schemas.convoId, cursor: cursor.optional(), deviceId: schemas.deviceId.optional() }),
  async handler(input, { app, caller, header, c, now }) {
    // Hono answers HEAD by running GET and dropping the body: a stream would run with nobody reading.
    if (c.req.method === "HEAD") {
      throw new XrpcError(405, "InvalidRequest", "streamConvoEvents takes GET", { Allow: "GET" });
    }
    const lastEventId = header("Last-Event-ID") || undefined;
    const resume = lastEventId === undefined ? input.cursor : cursor.safeParse(lastEventId).data;
    if (lastEventId !== undefined && resume === undefined) throw invalidRequest("Last-Event-ID must be an event id");
    const device = input.deviceId ?? IMPLICIT_DEVICE;
    // One statement checks the device, the membership and where the stream starts, in one snapshot.
    const head = await eventHead(
      app.db,
      input.convoId,
      caller,
      resume,
      device === IMPLICIT_DEVICE ? undefined : { id: device, now },
    );
    if (resume !== undefined && resume > head) throw invalidRequest("cursor is ahead of this conversation's events");
    const { config, events, logger, metrics } = app;
    const slot = events.streams.admit(caller, {
      perCaller: config.EVENTS_MAX_STREAMS_PER_CALLER,
      total: config.EVENTS_MAX_STREAMS,
    });
    metrics.streamOpened();
    const stream = new EventStreamBody();
    const connection = nodeConnection(c) ?? webConnection(stream);
    slot.onCut(connection.cut);
    void (async () => {
      try {
        await followConvo(stream, {
          db: app.db,
          bus: events,
          logger,
          metrics,
          connection,
          convoId: input.convoId,
          reader: caller,
          device,
          cursor: resume ?? head,
          keepAliveMs: config.EVENTS_KEEPALIVE_MS,
          maxBacklog: config.EVENTS_MAX_BACKLOG,
          maxPageBytes: config.MAX_PAGE_BYTES,
          writeTimeoutMs: config.EVENTS_WRITE_TIMEOUT_MS,
        });
      } finally {
        slot.release();
      }
    })().catch((error: unknown) => logger.error("event stream failed", { error: String(error) }));
    const framing = http11OnNode(c) ? CHUNKED : {};
    return c.newResponse(stream.readable, 200, { ...EVENT_STREAM_HEADERS, ...framing, "X-Accel-Buffering": "no" });
  },
});

/** The parts of Node's http.ServerResponse a stream uses (typed here: Workers have no Node types). */
interface NodeResponse {
  destroyed: boolean;
  writableFinished: boolean;
  socket: { resetAndDestroy(): void } | null;
  once(event: "close" | "finish", listener: () => void): unknown;
  destroy(): void;
}

/** On Node (@hono/node-server puts the ServerResponse in `c.env.outgoing`): the socket itself. */
function nodeConnection(c: Context): StreamConnection | undefined {
  const outgoing = (c.env as { outgoing?: NodeResponse } | undefined)?.outgoing;
  if (typeof outgoing?.destroy !== "function" || typeof outgoing.once !== "function") return undefined;
  const finished = new Promise<void>((resolve) => {
    if (outgoing.destroyed || outgoing.writableFinished) return resolve();
    outgoing.once("finish", resolve);
    outgoing.once("close", resolve);
  });
  // A reset drops what the kernel still holds for the client at once; a close would keep sending it.
  const cut = () => (outgoing.socket ? outgoing.socket.resetAndDestroy() : outgoing.destroy());
  return { finished, cut };
}

/** On Node, whether the request is HTTP/1.1 (not 1.0, not HTTP/2): the only one whose response may say it is chunked. */
function http11OnNode(c: Context): boolean {
  const incoming = (c.env as { incoming?: { httpVersionMajor?: number; httpVersionMinor?: number } } | undefined)
    ?.incoming;
  return incoming?.httpVersionMajor === 1 && (incoming.httpVersionMinor ?? 0) >= 1;
}

/** Elsewhere the runtime owns the socket: aborting the stream ends the response body. */
function webConnection(stream: EventStreamBody): StreamConnection {
  return { finished: Promise.resolve(), cut: () => stream.abort() };
}
