import type { Queryable } from "../db/driver.js";
import { XrpcError } from "../errors.js";
import type { EventBus } from "./bus.js";
import { ConvoFeed } from "./convoFeed.js";
import { within } from "./within.js";

/** How long streams may take to end on their own at shutdown before their connections are cut. */
const SHUTDOWN_GRACE_MS = 1000;
/** What a client refused for too many streams is told to wait: streams are long-lived. */
const RETRY_AFTER_SECONDS = 10;

export interface StreamLimits {
  /** Open streams one caller may hold on this instance. */
  perCaller: number;
  /** Open streams on this instance. */
  total: number;
}

/** One admitted stream: counted until `release()`. */
export interface StreamSlot {
  /** How to cut the stream's connection, for shutdown (set once the stream runs). */
  onCut(cut: () => void): void;
  release(): void;
}

interface Open {
  caller: string;
  cut?: () => void;
}

/**
 * This instance's open event streams: counted per caller the moment they are admitted (before any
 * await, so concurrent requests cannot all slip under a cap), the shared per-conversation feeds they
 * read from, and at shutdown the connections of streams that did not end in time, which are cut.
 *
 * @example
 * const slot = streams.admit(caller, { perCaller: 5, total: 10_000 }); // or 429
 * try { ... } finally { slot.release(); }
 */
export class OpenStreams {
  private readonly open = new Set<Open>();
  private readonly perCaller = new Map<string, number>();
  private readonly feeds = new Map<string, ConvoFeed>();
  private drained: (() => void) | undefined;

  constructor(private readonly bus: EventBus) {}

  /** Counts a new stream for `caller`, or throws 429 `RateLimitExceeded` when a cap is reached. */
  admit(caller: string, limits: StreamLimits): StreamSlot {
    const held = this.perCaller.get(caller) ?? 0;
    if (held >= limits.perCaller) throw tooMany(`at most ${limits.perCaller} open event streams per caller`);
    if (this.open.size >= limits.total) throw tooMany("this server holds as many event streams as it can");
    const entry: Open = { caller };
    this.open.add(entry);
    this.perCaller.set(caller, held + 1);
    let released = false;
    return {
      onCut: (cut) => (entry.cut = cut),
      release: () => {
        if (released) return;
        released = true;
        this.open.delete(entry);
        const left = this.perCaller.get(caller)! - 1;
        if (left === 0) this.perCaller.delete(caller);
        else this.perCaller.set(caller, left);
        if (this.open.size === 0) this.drained?.();
      },
    };
  }

  /** The shared live reader of a conversation's events on this instance (pages of at most `maxPageBytes`). */
  feed(db: Queryable, convoId: string, maxPageBytes: number): ConvoFeed {
    let feed = this.feeds.get(convoId);
    if (!feed) {
      const created = new ConvoFeed(
        db,
        this.bus,
        convoId,
        maxPageBytes,
        () => this.feeds.get(convoId) === created && this.feeds.delete(convoId),
      );
      this.feeds.set(convoId, created);
      feed = created;
    }
    return feed;
  }

  /**
   * Waits for the streams (already told to end) to finish, then cuts the connections of those that
   * did not (a client that stopped reading never takes its last bytes), and waits for them to go.
   */
  async close(): Promise<void> {
    if (this.open.size === 0) return;
    const drained = new Promise<void>((resolve) => (this.drained = resolve));
    if (await within(drained, SHUTDOWN_GRACE_MS)) return;
    for (const entry of this.open) entry.cut?.();
    await within(drained, SHUTDOWN_GRACE_MS);
  }
}

const tooMany = (message: string) =>
  new XrpcError(429, "RateLimitExceeded", message, { "Retry-After": String(RETRY_AFTER_SECONDS) });
