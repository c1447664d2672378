import type { SSEMessage, SSEStreamingApi } from "hono/streaming";
import type { Queryable } from "../db/driver.js";
import type { Logger } from "../logger.js";
import { readEvents, type ConvoEvent } from "../services/events.js";
import type { EventBus } from "./bus.js";
import { Wakeup } from "./wakeup.js";

export interface ConvoStreamOptions {
  db: Queryable;
  bus: EventBus;
  logger: Logger;
  convoId: string;
  /** The member following the conversation. */
  reader: string;
  /** Events after this seq are sent. */
  cursor: number;
  /** A comment goes out after this long without a write, so proxies keep the connection. */
  keepAliveMs: number;
  /** Once caught up, more unsent events than this make the client a slow consumer. */
  maxBacklog: number;
  /** A write the client does not take within this long makes it a slow consumer. */
  writeTimeoutMs: number;
}

const PAGE_SIZE = 100;

/**
 * Sends a conversation's events to one member until the client leaves, the member is removed, or the
 * client falls behind. Every read is "events after the cursor" from the database, in pages, so replay
 * and live delivery are the same loop and there is no seam to lose or repeat an event at. When caught
 * up it sleeps until a wake-up from the bus (or the poll interval) and reads again.
 *
 * A slow consumer gets an `info` event {type: "slow-consumer", skipped} and the stream ends; the
 * client resumes from its last event id. The member's own `left`/`removed` event is the last one sent.
 */
export async function followConvo(stream: SSEStreamingApi, options: ConvoStreamOptions): Promise<void> {
  const { db, bus, logger, convoId, reader, keepAliveMs, maxBacklog, writeTimeoutMs } = options;
  const wakeup = new Wakeup();
  const unsubscribe = bus.subscribe(convoId, () => wakeup.wake());
  stream.onAbort(() => wakeup.wake());
  let cursor = options.cursor;
  // Replay may be long; once caught up, a backlog means the client is not keeping up.
  let caughtUp = false;
  let lastWrite = Date.now();

  /** False when the client did not take the write in time (it stays queued). */
  const write = async (sending: Promise<unknown>) => {
    const taken = await within(sending, writeTimeoutMs);
    lastWrite = Date.now();
    return taken;
  };
  const slowConsumer = async (skipped: number) => {
    const data = JSON.stringify({ type: "slow-consumer", skipped });
    if (!(await write(stream.writeSSE({ event: "info", id: String(cursor), data })))) stream.abort();
  };

  try {
    // Sends the response head and tells the client the stream is open.
    if (!(await write(stream.write(": open\n\n")))) return stream.abort();
    while (!stream.aborted && !bus.closed) {
      const page = await readEvents(db, convoId, reader, cursor, PAGE_SIZE);
      if (!page) return;
      if (caughtUp && page.head - cursor > maxBacklog) return await slowConsumer(page.head - cursor);
      for (const event of page.events) {
        const taken = await write(stream.writeSSE(toSse(event)));
        cursor = event.seq;
        if (!taken) return await slowConsumer(page.head - cursor);
        if (endsMembership(event, reader)) return;
      }
      cursor = page.cursor;
      // Removed without its event in sight (it came before the cursor): stop all the same.
      if (!page.active && cursor >= page.head) return;
      if (page.more) continue;
      caughtUp = true;
      if (Date.now() - lastWrite >= keepAliveMs && !(await write(stream.write(": keep-alive\n\n")))) {
        return stream.abort();
      }
      await wakeup.wait(Math.min(bus.pollMs, keepAliveMs - (Date.now() - lastWrite)));
    }
  } catch (error) {
    // The client resumes from its last event id on a new connection.
    logger.warn("event stream ended by an error", {
      convoId,
      error: error instanceof Error ? `${error.name}: ${error.message}` : String(error),
    });
  } finally {
    unsubscribe();
  }
}

function toSse(event: ConvoEvent): SSEMessage {
  const data = event.kind === "message" ? event.message : event.membership;
  return { event: event.kind, id: String(event.seq), data: JSON.stringify(data) };
}

function endsMembership(event: ConvoEvent, reader: string): boolean {
  return (
    event.kind === "membership" &&
    event.membership.did === reader &&
    (event.membership.type === "left" || event.membership.type === "removed")
  );
}

async function within(sending: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  try {
    return await Promise.race([sending.then(() => true), late]);
  } finally {
    clearTimeout(timer);
  }
}
