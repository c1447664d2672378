import type { Queryable } from "../db/driver.js";
import type { EventPage } from "../services/events.js";
import { readSharedEvents, type SharedEventPage } from "../services/sharedEvents.js";
import type { EventBus } from "./bus.js";
import { encodeEvents, type SseEvents } from "./sseText.js";
import type { Wakeup } from "./wakeup.js";

/** Events a read of a conversation's stream holds at most (replay and live reads alike). */
export const PAGE_SIZE = 100;

/** A page of the feed as one reader may see it, with its events' SSE bytes (the same for every reader). */
export interface FeedPage extends EventPage {
  sse: SseEvents;
}

interface SharedRead {
  /** The readers whose membership the read reports. */
  readers: Set<string>;
  page: Promise<(SharedEventPage & { sse: SseEvents }) | undefined>;
}

/**
 * The live side of one conversation's streams on this instance: one bus subscription and one poll
 * timer for all of them, and one read per cursor per wake-up shared by every follower at that cursor
 * (N streams cost one statement per message, not N). A read is shared only until the next wake-up:
 * anything committed before a wake-up is in every read started after it. Each read reports which
 * followers are still active members, so a shared page never reaches a reader who was removed.
 *
 * @example
 * const feed = new ConvoFeed(db, bus, convoId, () => feeds.delete(convoId));
 * const unfollow = feed.follow(reader, wakeup);
 * const page = await feed.read(cursor, reader, config.MAX_PAGE_BYTES);
 */
export class ConvoFeed {
  private readonly followers = new Map<Wakeup, string>();
  /** Reads started since the last wake-up, by the cursor they read after. */
  private readonly reads = new Map<number, SharedRead>();
  private readonly unsubscribe: () => void;
  private pollTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly db: Queryable,
    private readonly bus: EventBus,
    private readonly convoId: string,
    private readonly onIdle: () => void,
  ) {
    this.unsubscribe = bus.subscribe(convoId, () => this.wake());
    this.armPoll();
  }

  /** Wakes `wakeup` whenever the conversation may have new events; returns the unfollow. */
  follow(reader: string, wakeup: Wakeup): () => void {
    this.followers.set(wakeup, reader);
    return () => {
      this.followers.delete(wakeup);
      if (this.followers.size === 0) this.stop();
    };
  }

  /** The events after `afterSeq` as `reader` may see them, if it is a live follower (past its joining); about `maxBytes` a page. */
  async read(afterSeq: number, reader: string, maxBytes: number): Promise<FeedPage | undefined> {
    let shared = this.reads.get(afterSeq);
    if (!shared || !shared.readers.has(reader)) {
      const readers = new Set(this.followers.values()).add(reader);
      const read: SharedRead = {
        readers,
        // Encoded once for every stream that sends the page.
        page: readSharedEvents(this.db, this.convoId, [...readers], afterSeq, PAGE_SIZE, maxBytes).then(
          (page) => page && { ...page, sse: encodeEvents(page.events) },
        ),
      };
      // A failed read is not handed to later callers.
      read.page.catch(() => this.reads.get(afterSeq) === read && this.reads.delete(afterSeq));
      this.reads.set(afterSeq, read);
      shared = read;
    }
    const page = await shared.page;
    return page && { ...page, active: page.active.has(reader) };
  }

  private wake(): void {
    this.reads.clear();
    this.armPoll();
    for (const wakeup of this.followers.keys()) wakeup.wake();
  }

  /** Wake-ups from other instances may be lost (or not sent): every `bus.pollMs` the followers read anyway. */
  private armPoll(): void {
    clearTimeout(this.pollTimer);
    this.pollTimer = setTimeout(() => this.wake(), this.bus.pollMs);
    // Node: a poll timer alone does not keep a process alive (Workers have no unref).
    (this.pollTimer as { unref?: () => void }).unref?.();
  }

  private stop(): void {
    clearTimeout(this.pollTimer);
    this.unsubscribe();
    this.reads.clear();
    this.onIdle();
  }
}
