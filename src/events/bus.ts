import type { Database } from "../db/driver.js";
import type { Logger } from "../logger.js";
import type { ConvoEvent } from "../services/events.js";
import type { BatchNotice, StoredEvent } from "../services/sendBatch.js";
import { OpenStreams } from "./openStreams.js";

/** The one Postgres channel every instance listens on; a payload is `<origin> <convoId>...`, or `<origin>` for a ping. */
export const CHANNEL = "mls_events";
/** NOTIFY payloads must stay under 8000 bytes. */
const MAX_PAYLOAD = 7900;
/** How long publishes gather before a NOTIFY carries them all. */
const NOTIFY_BATCH_MS = 5;

export interface EventBusOptions {
  db: Database;
  logger: Logger;
  /** How often a stream re-reads its conversation while wake-ups from other instances may not arrive. */
  pollMs: number;
  /**
   * How often it re-reads while LISTEN works (for a wake-up lost between commit and notify), and how
   * often LISTEN is pinged.
   */
  safetyPollMs: number;
  /** Use the database's LISTEN/NOTIFY when it has one; false where no connection outlives a request (Workers). */
  listen?: boolean;
}

/** Called when a conversation may have new events; with `written`, they are all of them, as this instance wrote them. */
type Waker = (written?: readonly ConvoEvent[]) => void;

/**
 * Wake-ups for conversation streams. The database is the source of truth: a wake-up only tells a
 * stream to read its conversation again, so a lost one costs latency, never an event.
 *
 * Streams in this process are woken directly. Other instances hear about a change through Postgres
 * NOTIFY, sent after the change committed (outside the writing transaction, so NOTIFY's commit lock
 * stays out of it) and batched: one NOTIFY names every conversation changed in the last few
 * milliseconds. Send batches are the exception: their statement notifies with its own commit (`notice`),
 * and their events are handed to this instance's streams (`publishEvents`), which then need not read
 * them. Where LISTEN is unavailable or stops answering its own pings, streams fall back to polling
 * every `pollMs`.
 *
 * @example
 * const events = new EventBus({ db, logger, pollMs: 1000, safetyPollMs: 30_000 });
 * const stop = events.subscribe(convoId, () => wakeup.wake());
 * events.publish(convoId); // after the write committed
 */
export class EventBus {
  /** This instance's open streams: admission caps, shared reads, and cutting them at shutdown. */
  readonly streams = new OpenStreams(this);
  private readonly subscribers = new Map<string, Set<Waker>>();
  /** Tells this instance's own notifications apart from everyone else's. */
  private readonly origin = crypto.randomUUID();
  /** Conversations changed since the last NOTIFY went out. */
  private readonly pending = new Set<string>();
  private flushing = false;
  private listenStarted = false;
  /** True while LISTEN is known to deliver: our last ping came back. */
  private listening = false;
  private pingOutstanding = false;
  private pingTimer: ReturnType<typeof setInterval> | undefined;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private unlisten: (() => Promise<void>) | undefined;
  private isClosed = false;

  constructor(private readonly options: EventBusOptions) {}

  /** How long a caught-up stream may sleep before it reads again without a wake-up. */
  get pollMs(): number {
    return this.listening ? this.options.safetyPollMs : this.options.pollMs;
  }

  /** Set by `close()`: streams end so the server can stop. */
  get closed(): boolean {
    return this.isClosed;
  }

  /** After a change to the conversation committed: wake its streams here and on other instances. Never throws. */
  publish(convoId: string): void {
    this.wakeLocal(convoId);
    if (this.crossInstance) this.notify(convoId);
  }

  /**
   * The NOTIFY a statement that writes events sends with its own commit, for other instances (the payload
   * `<origin> <convoId>`); undefined where other instances are not told (no LISTEN).
   */
  get notice(): BatchNotice | undefined {
    return this.crossInstance ? { channel: CHANNEL, origin: this.origin } : undefined;
  }

  /**
   * After a statement that sent `notice` committed: hands each conversation's events (all it wrote) to
   * the streams here, in a task of its own: the writers' answers (and the next batch) go out first instead of
   * waiting behind the events' encoding and a thousand streams' writes. Never throws.
   */
  publishEvents(events: readonly StoredEvent[]): void {
    if (!events.some((stored) => this.subscribers.has(stored.convoId))) return;
    setTimeout(() => {
      try {
        for (const [convoId, written] of this.byConvo(events)) {
          for (const wake of this.subscribers.get(convoId) ?? []) wake(written);
        }
      } catch (error) {
        this.options.logger.warn("handing written events to streams failed", { error: describe(error) });
      }
    }, 0);
  }

  /** The events of the conversations followed here, in seq order; only now is each built (its view's base64). */
  private byConvo(events: readonly StoredEvent[]): Map<string, ConvoEvent[]> {
    const byConvo = new Map<string, ConvoEvent[]>();
    for (const stored of events) {
      if (!this.subscribers.has(stored.convoId)) continue;
      const written = byConvo.get(stored.convoId);
      if (written) written.push(stored.event);
      else byConvo.set(stored.convoId, [stored.event]);
    }
    for (const written of byConvo.values()) written.sort((a, b) => a.seq - b.seq);
    return byConvo;
  }

  /** Calls `wake` whenever the conversation may have new events; returns the unsubscribe. */
  subscribe(convoId: string, wake: Waker): () => void {
    void this.startListening();
    const wakers = this.subscribers.get(convoId) ?? new Set();
    this.subscribers.set(convoId, wakers);
    wakers.add(wake);
    return () => {
      wakers.delete(wake);
      if (wakers.size === 0 && this.subscribers.get(convoId) === wakers) this.subscribers.delete(convoId);
    };
  }

  /** Ends every stream (they see `closed` when woken; those that do not end in time are cut) and stops listening. */
  async close(): Promise<void> {
    this.isClosed = true;
    clearInterval(this.pingTimer);
    clearTimeout(this.retryTimer);
    this.wakeAll();
    await Promise.all([this.streams.close(), this.unlisten?.().catch(() => {})]);
  }

  private get crossInstance(): boolean {
    return this.options.listen !== false && this.options.db.listen !== undefined;
  }

  private wakeLocal(convoId: string): void {
    for (const wake of this.subscribers.get(convoId) ?? []) wake();
  }

  private wakeAll(): void {
    for (const wakers of this.subscribers.values()) for (const wake of wakers) wake();
  }

  /**
   * One NOTIFY in flight per instance, naming every conversation changed meanwhile: under load a
   * NOTIFY (a transaction that takes the cluster-wide notify lock at commit) carries hundreds of
   * conversations instead of one each.
   */
  private notify(convoId: string): void {
    this.pending.add(convoId);
    if (this.flushing) return;
    this.flushing = true;
    setTimeout(() => void this.flush(), NOTIFY_BATCH_MS);
  }

  private async flush(): Promise<void> {
    while (this.pending.size > 0 && !this.isClosed) {
      const batch: string[] = [];
      let size = this.origin.length;
      for (const convoId of this.pending) {
        if (size + 1 + convoId.length > MAX_PAYLOAD && batch.length > 0) break;
        batch.push(convoId);
        size += 1 + convoId.length;
      }
      for (const convoId of batch) this.pending.delete(convoId);
      await this.send(`${this.origin} ${batch.join(" ")}`);
    }
    this.flushing = false;
  }

  private async send(payload: string): Promise<void> {
    try {
      await this.options.db.query(`SELECT pg_notify($1, $2)`, [CHANNEL, payload]);
    } catch (error) {
      this.options.logger.warn("event notification failed", { error: describe(error) });
    }
  }

  /** LISTEN starts with the first stream, so processes that never stream hold no extra connection. */
  private async startListening(): Promise<void> {
    if (this.listenStarted || !this.crossInstance || this.isClosed) return;
    this.listenStarted = true;
    const { db, logger, safetyPollMs } = this.options;
    const onPayload = (payload: string) => this.received(payload);
    let unlisten: () => Promise<void>;
    try {
      unlisten = await db.listen!(CHANNEL, onPayload, () => this.relistened());
    } catch (error) {
      // Streams poll meanwhile; without a retry they would poll for the life of the process.
      logger.warn("LISTEN unavailable: streams poll the events table", { error: describe(error) });
      this.listenStarted = false;
      this.retryTimer = setTimeout(() => void this.startListening(), safetyPollMs);
      (this.retryTimer as { unref?: () => void }).unref?.();
      return;
    }
    if (this.isClosed) return void unlisten().catch(() => {});
    this.unlisten = unlisten;
    this.pingTimer = setInterval(() => this.ping(), safetyPollMs);
    // Node: the ping timer alone does not keep a process alive (Workers have no unref).
    (this.pingTimer as { unref?: () => void }).unref?.();
  }

  /** Listening (re)started: whatever was notified while it was down is read now. */
  private relistened(): void {
    this.listening = true;
    this.pingOutstanding = false;
    this.wakeAll();
  }

  private received(payload: string): void {
    if (payload === this.origin) {
      this.pingOutstanding = false;
      if (!this.listening) this.options.logger.info("LISTEN answers again");
      this.listening = true;
      return;
    }
    const [origin, ...convoIds] = payload.split(" ");
    if (origin === this.origin) return;
    for (const convoId of convoIds) this.wakeLocal(convoId);
  }

  /** A ping that did not come back by the next one means LISTEN is not delivering: poll until it does. */
  private ping(): void {
    if (this.pingOutstanding && this.listening) {
      this.listening = false;
      this.options.logger.warn("LISTEN stopped answering: streams poll the events table");
      this.wakeAll();
    }
    this.pingOutstanding = true;
    void this.send(this.origin);
  }
}

function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}
