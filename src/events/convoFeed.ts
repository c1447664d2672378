import type { Queryable } from "../db/driver.js";
import type { ConvoEvent, EventPage } from "../services/events.js";
import { readSharedEvents, type SharedEventPage } from "../services/sharedEvents.js";
import type { EventBus } from "./bus.js";
import { encodeEvents, type SseEvents } from "./sseText.js";
import type { Wakeup } from "./wakeup.js";

/** Events a read of a conversation's stream holds at most (replay and live reads alike). */
export const PAGE_SIZE = 100;

/**
 * Pages kept for streams still behind: past this many, or past this many times MAX_PAGE_BYTES of SSE text, or
 * past MAX_KEPT_BYTES whatever MAX_PAGE_BYTES is (their events are kept too, about as large; pages are kept after
 * every stream read them, until the next outside wake-up), the oldest go; a stream that needs one reads it again.
 */
const MAX_PAGES = 32;
const MAX_KEPT_PAGE_BYTES = 2;
const MAX_KEPT_BYTES = 1 << 20;

/** A page of the feed as one reader may see it, with its events' SSE bytes (the same for every reader). */
export interface FeedPage extends EventPage {
  sse: SseEvents;
}

interface Shared {
  /** The readers whose membership the page reports. */
  readers: Set<string>;
  page: Promise<(SharedEventPage & { sse: SseEvents }) | undefined>;
  /** Its SSE bytes, once known (0 while its read runs). */
  bytes: number;
}

/** What the feed knows for sure since its last read that no wake-up from outside overtook. */
interface Known {
  /** The count of outside wake-ups when it was learnt: any later one may mean an event past `head`. */
  wakes: number;
  /** Every event up to here was committed, and none past it had woken the feed. */
  head: number;
  readers: Set<string>;
  /** Those of `readers` who were active members at `head`. */
  active: Set<string>;
}

/**
 * The live side of one conversation's streams on this instance: one bus subscription and one poll
 * timer for all of them, and one read per cursor per wake-up shared by every follower at that cursor
 * (N streams cost one statement per message, not N). A read is shared only until the next wake-up:
 * anything committed before a wake-up is in every read started after it. Each read reports which
 * followers are still active members, so a shared page never reaches a reader who was removed.
 *
 * Events this instance wrote (a send batch, `EventBus.publishEvents`) need no read at all when the feed
 * knows everything up to the one before them: no wake-up from outside came since its last read and
 * that read's head, or the last events handed to it, end right before them. Every writer takes event
 * seqs under the conversation's lock, so no other event lies between, and membership changes only with
 * an event, so the members that read found active still are. They become the page after that head, and
 * the followers are woken. Anything else (a gap, a wake-up from outside meanwhile) is a plain wake-up.
 *
 * @example
 * const feed = new ConvoFeed(db, bus, convoId, config.MAX_PAGE_BYTES, () => feeds.delete(convoId));
 * const unfollow = feed.follow(reader, wakeup);
 * const page = await feed.read(cursor, reader);
 */
export class ConvoFeed {
  private readonly followers = new Map<Wakeup, string>();
  /** Pages by the cursor they follow, until the next wake-up from outside: shared reads, and events handed over. */
  private readonly pages = new Map<number, Shared>();
  private readonly unsubscribe: () => void;
  private pollTimer: ReturnType<typeof setTimeout> | undefined;
  /** Wake-ups from outside so far (other writers, other instances, polls). */
  private wakes = 0;
  private known: Known | undefined;
  /** The newest event seq a read or a hand-over showed committed: how far behind a follower is. */
  private latest = 0;

  constructor(
    private readonly db: Queryable,
    private readonly bus: EventBus,
    private readonly convoId: string,
    /** MAX_PAGE_BYTES: a page stops before its events pass this many bytes (never before its first). */
    private readonly maxBytes: number,
    private readonly onIdle: () => void,
  ) {
    this.unsubscribe = bus.subscribe(convoId, (written) => (written ? this.written(written) : this.wake()));
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

  /** The events after `afterSeq` as `reader` may see them, if it is a live follower (past its joining). */
  async read(afterSeq: number, reader: string): Promise<FeedPage | undefined> {
    let shared = this.pages.get(afterSeq);
    if (!shared || !shared.readers.has(reader)) {
      const readers = new Set(this.followers.values()).add(reader);
      const wakes = this.wakes;
      const read: Shared = {
        readers,
        bytes: 0,
        page: readSharedEvents(this.db, this.convoId, [...readers], afterSeq, PAGE_SIZE, this.maxBytes).then((page) => {
          if (!page) return page;
          this.learn(page, readers, wakes);
          // Encoded once for every stream that sends the page.
          const sse = encodeEvents(page.events);
          read.bytes = sse.bytes.byteLength;
          this.trim();
          return { ...page, sse };
        }),
      };
      // A failed read is not handed to later callers.
      read.page.catch(() => this.pages.get(afterSeq) === read && this.pages.delete(afterSeq));
      this.keep(afterSeq, read);
      shared = read;
    }
    const page = await shared.page;
    if (!page) return undefined;
    // Wake-ups merge while a follower is busy: it may have slept through the one that came with the next
    // page, which only this page's end leads to. So that page is "more", and the follower reads on.
    const more = page.more || (page.cursor > afterSeq && this.pages.has(page.cursor));
    return { ...page, head: Math.max(page.head, this.latest), active: page.active.has(reader), more };
  }

  /** A read started after wake-up number `wakes` finished: if no other came since, what it saw is sure. */
  private learn(page: SharedEventPage, readers: Set<string>, wakes: number): void {
    this.latest = Math.max(this.latest, page.head);
    if (wakes !== this.wakes) return;
    // A read that started before events handed over since knows less than they do.
    if (this.known?.wakes === wakes && this.known.head > page.head) return;
    this.known = { wakes, head: page.head, readers, active: page.active };
  }

  /** This instance wrote `events` (in seq order, every event of their seqs) and they committed. */
  private written(events: readonly ConvoEvent[]): void {
    const known = this.known;
    const after = events[0]!.seq - 1;
    const consecutive = events.every((event, i) => event.seq === after + 1 + i);
    if (!known || known.wakes !== this.wakes || known.head !== after || !consecutive) return this.wake();
    const head = events[events.length - 1]!.seq;
    known.head = head;
    this.latest = Math.max(this.latest, head);
    let afterSeq = after;
    for (const { events: page, sse } of pagesOf(events, this.maxBytes)) {
      const cursor = page[page.length - 1]!.seq;
      const shared = { head, active: known.active, events: page, cursor, more: cursor < head, sse };
      this.keep(afterSeq, { readers: known.readers, page: Promise.resolve(shared), bytes: sse.bytes.byteLength });
      afterSeq = cursor;
    }
    for (const wakeup of this.followers.keys()) wakeup.wake();
  }

  /** Keeps `shared` as the page after `afterSeq`; the oldest go past the bounds. */
  private keep(afterSeq: number, shared: Shared): void {
    this.pages.delete(afterSeq);
    this.pages.set(afterSeq, shared);
    this.trim();
  }

  /** Drops the oldest pages past MAX_PAGES or the bytes kept (see MAX_KEPT_BYTES); the newest stays. */
  private trim(): void {
    const maxKept = Math.min(MAX_KEPT_PAGE_BYTES * this.maxBytes, MAX_KEPT_BYTES);
    let bytes = 0;
    for (const shared of this.pages.values()) bytes += shared.bytes;
    for (const [oldest, shared] of this.pages) {
      if (this.pages.size <= 1 || (this.pages.size <= MAX_PAGES && bytes <= maxKept)) break;
      this.pages.delete(oldest);
      bytes -= shared.bytes;
    }
  }

  /** Something may have changed that this feed has not seen: every follower reads again. */
  private wake(): void {
    this.wakes++;
    this.pages.clear();
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
    this.pages.clear();
    this.onIdle();
  }
}

/** `events` in pages as a read would cut them: at most PAGE_SIZE events, and `maxBytes` past the first. */
function pagesOf(events: readonly ConvoEvent[], maxBytes: number): { events: ConvoEvent[]; sse: SseEvents }[] {
  const { bytes, ends } = encodeEvents(events);
  const pages: { events: ConvoEvent[]; sse: SseEvents }[] = [];
  for (let start = 0; start < events.length;) {
    const from = start === 0 ? 0 : ends[start - 1]!;
    let end = start + 1;
    while (end < events.length && end - start < PAGE_SIZE && ends[end]! - from <= maxBytes) end++;
    const sse = { bytes: bytes.subarray(from, ends[end - 1]), ends: ends.slice(start, end).map((at) => at - from) };
    pages.push({ events: events.slice(start, end), sse });
    start = end;
  }
  return pages;
}
