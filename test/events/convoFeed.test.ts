/**
 * A conversation's feed on real PostgreSQL, step by step: the events this instance's send batches wrote are
 * handed to its followers without a read when the feed knows everything before them, and read from the
 * database otherwise; a follower that slept through some of those wake-ups still reads every page.
 */
import { afterAll, describe, expect, it } from "vitest";
import { EventBus } from "../../src/events/bus.js";
import { Wakeup } from "../../src/events/wakeup.js";
import { createLogger } from "../../src/logger.js";
import { IMPLICIT_DEVICE } from "../../src/services/actingDevice.js";
import { SHARED_EVENTS_SQL } from "../../src/services/sharedEvents.js";
import { storeBatch } from "../../src/services/sendBatch.js";
import { testApp, testDatabase } from "../helpers/context.js";
import { withStatementHook } from "../helpers/faults.js";
import { conversation } from "./convo.js";

const db = testDatabase();
afterAll(() => db.close());
const NEVER = 600_000;

/** A feed of `convoId` on a bus of its own (no LISTEN, no polls), counting its shared reads. */
function feedOf(convoId: string, maxPageBytes = 1 << 20) {
  const counted = { reads: 0 };
  const hooked = withStatementHook(db, async (sql) => {
    if (sql === SHARED_EVENTS_SQL) counted.reads++;
  });
  const bus = new EventBus({ db: hooked, logger: createLogger("silent"), pollMs: NEVER, safetyPollMs: NEVER });
  const feed = bus.streams.feed(hooked, convoId, maxPageBytes);
  return { bus, feed, counted };
}

/** Stores one message from `sender` as a batch of its own; returns the events it wrote. */
async function stored(convoId: string, sender: string, text: string) {
  const message = {
    convoId,
    sender,
    senderDevice: IMPLICIT_DEVICE,
    epoch: 0,
    ciphertext: new TextEncoder().encode(text),
    messageType: "app" as const,
    opaque: true,
    now: new Date(),
  };
  const { outcomes, events } = await storeBatch(db, [{ message }], "blue.catbird.mls.sendMessage");
  expect(outcomes[0]).toHaveProperty("sent");
  return events;
}

/** The bus hands events over in a task of its own: this resolves after the ones published before. */
const handedOver = () => new Promise((resolve) => setTimeout(resolve, 0));

const seqs = (page: { events: { seq: number }[] } | undefined) => page?.events.map((event) => event.seq);

describe("ConvoFeed", () => {
  it("keeps at most about two pages' worth of bytes for followers behind: an older page is read again", async () => {
    const { app } = testApp(db);
    const { alice, bob, convoId } = await conversation(app); // events 1-3: the joinings
    const { bus, feed, counted } = feedOf(convoId, 2048);
    const unfollow = feed.follow(bob, new Wakeup());
    try {
      expect(seqs(await feed.read(3, bob))).toEqual([]);
      // Five handed-over pages of about 1.4 kB of SSE text each (a 1 kB message in base64): more than 2 x 2 kB.
      for (let i = 0; i < 5; i++) bus.publishEvents(await stored(convoId, alice, "x".repeat(1024)));
      await handedOver();
      expect(counted.reads).toBe(1);
      // The newest ones are still kept; the first was dropped and is read again (a read packs its page itself).
      expect(seqs(await feed.read(7, bob))).toEqual([8]);
      expect(counted.reads).toBe(1);
      expect(seqs(await feed.read(3, bob))?.[0]).toBe(4);
      expect(counted.reads).toBe(2);
    } finally {
      unfollow();
      await bus.close();
    }
  });

  it("hands over what this instance wrote after what it knows, pages a sleeping follower through all of it, and reads after a gap or a wake-up from outside", async () => {
    const { app } = testApp(db);
    const { alice, bob, convoId } = await conversation(app); // events 1-3: the joinings
    const { bus, feed, counted } = feedOf(convoId);
    const wakeup = new Wakeup();
    const unfollow = feed.follow(bob, wakeup);
    try {
      // What the feed knows comes from a read.
      expect(seqs(await feed.read(3, bob))).toEqual([]);
      expect(counted.reads).toBe(1);

      // Two batches committed and handed over before the follower got to read: one wake-up is pending,
      // and the first page leads to the second.
      bus.publishEvents(await stored(convoId, alice, "four"));
      bus.publishEvents(await stored(convoId, alice, "five"));
      await handedOver();
      expect(await wakeup.wait(0)).toBe(true);
      const four = await feed.read(3, bob);
      // Its head is the newest event the feed knows of: how far behind the follower is.
      expect(four).toMatchObject({ events: [{ seq: 4 }], cursor: 4, head: 5, active: true, more: true });
      expect(new TextDecoder().decode(four!.sse.bytes)).toMatch(/^event: message\ndata: \{.*\}\nid: 4\n\n$/);
      expect(await feed.read(4, bob)).toMatchObject({ events: [{ seq: 5 }], cursor: 5, more: false });
      expect(counted.reads).toBe(1);

      // A batch after events the feed never heard of (written elsewhere, no wake-up yet): it reads them all.
      await stored(convoId, alice, "six");
      bus.publishEvents(await stored(convoId, alice, "seven"));
      await handedOver();
      expect(seqs(await feed.read(5, bob))).toEqual([6, 7]);
      expect(counted.reads).toBe(2);

      // From what that read learnt, the next batch is handed over again; a wake-up from outside ends that.
      bus.publishEvents(await stored(convoId, alice, "eight"));
      await handedOver();
      expect(seqs(await feed.read(7, bob))).toEqual([8]);
      expect(counted.reads).toBe(2);
      bus.publish(convoId);
      bus.publishEvents(await stored(convoId, alice, "nine"));
      await handedOver();
      expect(seqs(await feed.read(8, bob))).toEqual([9]);
      expect(counted.reads).toBe(3);
    } finally {
      unfollow();
      await bus.close();
    }
  });
});
