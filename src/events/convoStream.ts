import type { Queryable } from "../db/driver.js";
import type { Logger } from "../logger.js";
import type { Metrics } from "../metrics.js";
import { IMPLICIT_DEVICE } from "../services/actingDevice.js";
import { readEvents, type ConvoEvent } from "../services/events.js";
import type { EventBus } from "./bus.js";
import { PAGE_SIZE, type FeedPage } from "./convoFeed.js";
import type { EventStreamBody } from "./eventStreamBody.js";
import { encodeEvents, sseComment, sseEvent, sseOpen } from "./sseText.js";
import { Wakeup } from "./wakeup.js";
import { within } from "./within.js";

const KEEP_ALIVE = sseComment("keep-alive");

/** Why a stream ended (the label of `event_streams_ended_total`). */
export type StreamEnd = "client_closed" | "slow_consumer" | "removed" | "shutdown" | "error";

/** The connection a stream's response goes out on. */
export interface StreamConnection {
  /** Settles once the response was handed to the operating system in full, or the connection closed. */
  finished: Promise<void>;
  /** Drops the connection and whatever it still buffers: for a client that stopped reading. */
  cut(): void;
}

export interface ConvoStreamOptions {
  db: Queryable;
  bus: EventBus;
  logger: Logger;
  metrics: Metrics;
  connection: StreamConnection;
  convoId: string;
  /** The member following the conversation. */
  reader: string;
  /** The member's device following it (IMPLICIT_DEVICE for the implicit one). */
  device: string;
  /** Events after this seq are sent. */
  cursor: number;
  /** A comment goes out after this long without a write, so proxies keep the connection. */
  keepAliveMs: number;
  /** Once caught up, more unsent events than this make the client a slow consumer. */
  maxBacklog: number;
  /** MAX_PAGE_BYTES: the most JSON one read of events holds (past its first event). */
  maxPageBytes: number;
  /** A write the client does not take within this long makes it a slow consumer. */
  writeTimeoutMs: number;
}

/**
 * Sends a conversation's events to one member until the client leaves, the member is removed, the
 * client falls behind, or the server stops; logs and counts why it ended. Every read is "events after
 * the cursor" from the database, in pages, so replay and live delivery are the same loop and there is
 * no seam to lose or repeat an event at. The replay reads as this member (`readEvents`); once caught
 * up it sleeps until the conversation's feed wakes it and reads through the feed, one read shared by
 * every stream of the conversation on this instance. A page goes out in one write of bytes encoded
 * once for every stream that sends it.
 *
 * A client that falls behind by more than `maxBacklog` gets an `info` event {type: "slow-consumer",
 * skipped} and the stream ends; one that does not take a write within `writeTimeoutMs` has its
 * connection cut (a notice would only queue behind the write it is not taking). Either way it resumes
 * from its last event id. The member's own `left`/`removed` event is the last one sent, and so is the
 * `deviceRemoved`/`deviceRevoked` event of the device following.
 */
export async function followConvo(stream: EventStreamBody, options: ConvoStreamOptions): Promise<void> {
  const {
    db,
    bus,
    logger,
    metrics,
    connection,
    convoId,
    reader,
    device,
    keepAliveMs,
    maxBacklog,
    maxPageBytes,
    writeTimeoutMs,
  } = options;
  const wakeup = new Wakeup();
  const feed = bus.streams.feed(db, convoId, maxPageBytes);
  const unfollow = feed.follow(reader, wakeup);
  stream.onAbort(() => wakeup.wake());
  let cursor = options.cursor;
  let lastWrite = Date.now();
  const stopped = (): StreamEnd | undefined => (bus.closed ? "shutdown" : stream.aborted ? "client_closed" : undefined);

  /** False when the client did not take the write in time (it stays queued). */
  const write = async (bytes: Uint8Array) => {
    const taken = stream.offer(bytes) || (await within(stream.write(bytes), writeTimeoutMs));
    lastWrite = Date.now();
    return taken;
  };
  const slowConsumer = (skipped: number, stalled: boolean): StreamEnd => {
    logger.warn("event stream: slow consumer", { convoId, reader, skipped, stalled });
    if (stalled) connection.cut();
    return "slow_consumer";
  };
  const backlog = async (skipped: number): Promise<StreamEnd> => {
    const taken = await write(sseEvent("info", cursor, { type: "slow-consumer", skipped }));
    return slowConsumer(skipped, !taken);
  };
  /** Sends a page, up to and including an event that ends the stream; why the stream ends, or undefined to go on. */
  const deliver = async (page: FeedPage): Promise<StreamEnd | undefined> => {
    const last = page.events.findIndex((event) => endsStream(event, reader, device));
    // No longer a member, and the page does not reach the end of the membership: nothing in it is theirs.
    if (!page.active && !page.more && last < 0) return "removed";
    const count = last < 0 ? page.events.length : last + 1;
    if (count > 0) {
      const ended = stopped();
      if (ended) return ended;
      const bytes = count === page.events.length ? page.sse.bytes : page.sse.bytes.subarray(0, page.sse.ends[last]);
      if (!(await write(bytes))) return slowConsumer(page.head - cursor, true);
    }
    if (last >= 0) {
      cursor = page.events[last]!.seq;
      return "removed";
    }
    cursor = page.cursor;
  };
  /** Until something new may have arrived, with keep-alives meanwhile; why the stream ends, if it does. */
  const idle = async (): Promise<StreamEnd | undefined> => {
    while (!stopped()) {
      const quiet = Date.now() - lastWrite;
      if (quiet < keepAliveMs) {
        if (await wakeup.wait(keepAliveMs - quiet)) return;
      } else if (!(await write(KEEP_ALIVE))) {
        return slowConsumer(0, true);
      }
    }
  };
  /** A page of this member's own replay (read as this member, so never shared). */
  const replay = async (after: number): Promise<FeedPage | undefined> => {
    const page = await readEvents(db, convoId, reader, after, PAGE_SIZE, { maxBytes: maxPageBytes });
    return page && { ...page, sse: encodeEvents(page.events) };
  };
  const run = async (): Promise<StreamEnd> => {
    // Sends the response head and tells the client the stream is open.
    if (!(await write(sseOpen(cursor)))) return slowConsumer(0, true);
    let live = false;
    for (;;) {
      const ended = stopped();
      if (ended) return ended;
      const page = live ? await feed.read(cursor, reader) : await replay(cursor);
      if (!page) return "removed";
      // Replay may be long; once caught up, a backlog means the client is not keeping up.
      if (live && page.head - cursor > maxBacklog) return backlog(page.head - cursor);
      const delivered = await deliver(page);
      if (delivered) return delivered;
      if (page.more) continue;
      live = true;
      const idled = await idle();
      if (idled) return idled;
    }
  };

  let end: StreamEnd;
  try {
    end = await run();
  } catch (error) {
    // The client resumes from its last event id on a new connection.
    logger.warn("event stream ended by an error", {
      convoId,
      error: error instanceof Error ? `${error.name}: ${error.message}` : String(error),
    });
    end = "error";
  } finally {
    unfollow();
  }
  // The response ends here; a client that does not take its last bytes loses the connection.
  void stream.close();
  if (!(await within(connection.finished, writeTimeoutMs))) connection.cut();
  logger.info("event stream ended", { convoId, reader, reason: end, cursor });
  metrics.streamEnded(end);
}

/** The reader's membership ends (it left or was removed), or the device following is no longer in the group. */
function endsStream(event: ConvoEvent, reader: string, device: string): boolean {
  if (event.kind !== "membership" || event.membership.did !== reader) return false;
  const { type, deviceId = IMPLICIT_DEVICE } = event.membership;
  if (type === "left" || type === "removed") return true;
  return (type === "deviceRemoved" || type === "deviceRevoked") && deviceId === device;
}
