import { DatabaseError, isSqlState, UniqueViolationError, type Queryable } from "../db/driver.js";
import type { KeyClaim, OnceOutcome } from "./idempotencyKeys.js";
import type { SendMessage } from "./messages.js";
import { storeBatch, type BatchItem, type BatchNotice, type BatchResult, type StoredEvent } from "./sendBatch.js";

/** Where batches announce what they stored (the app's EventBus). */
export interface BatchAnnouncer {
  /** The NOTIFY each batch statement sends with its commit, for other instances' streams; undefined: none. */
  readonly notice: BatchNotice | undefined;
  /** After a batch committed: the events it wrote, for this instance's streams. Never throws. */
  publishEvents(events: readonly StoredEvent[]): void;
}

export interface SendCoalescerOptions {
  /** The pool the batches run on (not a request's transaction). */
  db: Queryable;
  /** The most sends one statement stores. */
  maxItems: number;
  /** The most ciphertext bytes one statement carries (a larger single send still goes alone). */
  maxBytes: number;
  /** How many batches may be in flight at once, each for its own share of the conversations. */
  lanes: number;
  /** The method the keys belong to (their scope), the XRPC NSID. */
  method: string;
  /** Told the size of every batch stored. */
  observe(items: number): void;
  /** Wakes the streams of what each batch stored: a stored send needs no announcing of its own. */
  announcer: BatchAnnouncer;
}

/**
 * Group commit for sendMessage in this process. Conversations are shared out among `lanes`; in each
 * lane, a send arriving while no batch is in flight starts one at once, and sends arriving while
 * one is in flight wait for it and form the next, up to `maxItems` and `maxBytes`. Each batch is
 * one statement and one commit (`storeBatch`); lanes never hold the same conversation, so their
 * batches, in flight together, do not skip each other's rows, and their commits share WAL flushes.
 * Every send gets its own outcome: stored with its answer, a repeat's committed answer, or
 * undefined, for the caller's general path (errors to explain, held keys). A conversation another
 * transaction holds (another instance's batch, say) does not send its items down the general path one by one:
 * the lane stores them together in a statement that waits for it (bounded). What a
 * batch stored is announced by the batch: its statement notifies other instances, and its events go to
 * this instance's streams as soon as it committed.
 *
 * @example
 * const sends = new SendCoalescer({ db, maxItems: 128, maxBytes: 4 << 20, lanes: 2, method, observe, announcer: events });
 * const outcome = await sends.send(message, claim); // undefined: take the general path
 */
export class SendCoalescer {
  private readonly lanes: SendLane[];

  constructor(options: SendCoalescerOptions) {
    this.lanes = Array.from({ length: options.lanes }, () => new SendLane(options));
  }

  /**
   * Stores `message` in its lane's next batch; a keyed send passes its claim (scoped to `options.method`).
   * `deadlinePassed` is its request's: once true, the send is not put in a batch (undefined: the general path,
   * which starts nothing then either).
   */
  send(message: SendMessage, claim?: KeyClaim, deadlinePassed: () => boolean = never): Promise<OnceOutcome> {
    return this.lanes[laneOf(message.convoId, this.lanes.length)]!.send(message, claim, deadlinePassed);
  }
}

/** A conversation's lane: a cheap string hash, the same for every send to it. */
function laneOf(convoId: string, lanes: number): number {
  let hash = 0;
  for (let i = 0; i < convoId.length; i++) hash = (hash * 31 + convoId.charCodeAt(i)) | 0;
  return Math.abs(hash) % lanes;
}

const never = () => false;

interface Waiting extends BatchItem {
  deadlinePassed(): boolean;
  settle(outcome: OnceOutcome): void;
  fail(error: unknown): void;
}

/**
 * The longest a statement of held items waits for their conversations' rows: another instance's batch holding
 * one commits within milliseconds; past this, the row is held by something longer and the lane goes on.
 */
const HELD_WAIT_MS = 250;

/** The primary key of idempotency_keys: a batch's record insert that meets one committed after its snapshot. */
const KEY_RECORD = "idempotency_keys_pkey";

/** 57014: the statement ran past its timeout (overload): sending each item again alone would add to it. */
const QUERY_CANCELED = "57014";

/** The database refused the statement (a SQLSTATE): nothing of it was stored, and no overload says to hold back. */
const refusedByDatabase = (error: unknown) =>
  error instanceof DatabaseError && isSqlState(error.code) && error.code !== QUERY_CANCELED;

/**
 * One lane: one batch in flight at a time. Only answered sends were stored: a send's promise
 * settles after the statement that stored it returned. If the statement failed, nothing of it was
 * stored: when the database refused it (a key conflict or any other error with a SQLSTATE), each
 * send takes the general path alone, so a poisoned item fails alone; when the connection was lost
 * or the socket failed (the commit may or may not have happened) or the statement timed out, every
 * send fails as a lone one would.
 *
 * Sends whose conversation's row another transaction held are stored next, together, by a statement that waits
 * for those rows (see `run`); then the lane goes on.
 *
 * One key is in one batch at a time: a send whose key is queued or in flight takes the general
 * path, which waits for that batch's commit and replays its answer. (A key sent to two
 * conversations lands in two lanes; the second batch finds its advisory lock taken.)
 */
class SendLane {
  private queue: Waiting[] = [];
  private flushing = false;
  /** The keys (caller, key) queued or in flight. */
  private readonly keys = new Set<string>();

  constructor(private readonly options: SendCoalescerOptions) {}

  send(message: SendMessage, claim: KeyClaim | undefined, deadlinePassed: () => boolean): Promise<OnceOutcome> {
    const key = claim && keyOf(claim);
    if (key !== undefined) {
      if (this.keys.has(key)) return Promise.resolve(undefined);
      this.keys.add(key);
    }
    return new Promise<OnceOutcome>((settle, fail) => {
      this.queue.push({ message, claim, deadlinePassed, settle, fail });
      if (this.flushing) return;
      this.flushing = true;
      // Not a timer: sends read in this turn of the event loop join the first batch, and none waits.
      queueMicrotask(() => void this.flush());
    });
  }

  private async flush(): Promise<void> {
    while (this.dropLate() > 0) {
      const held = (await this.run(this.take())).filter((item) => !this.late(item));
      if (held.length > 0) await this.run(held, HELD_WAIT_MS);
    }
    this.flushing = false;
  }

  /**
   * Stores `batch` and settles each item, except those whose conversation another transaction held: those
   * are returned, for a statement that waits for their rows (`heldWaitMs`). Waiting in the lane keeps their
   * order before later sends to the same conversations; the wait is bounded, so a conversation held long
   * holds the lane up at most that long, and its items then take the general path.
   */
  private async run(batch: Waiting[], heldWaitMs?: number): Promise<Waiting[]> {
    try {
      const { outcomes, held, events } = await this.store(batch, heldWaitMs);
      const heldItems = new Set(held.map((n) => batch[n]!));
      this.options.observe(batch.length - heldItems.size);
      batch.forEach((item, n) => heldItems.has(item) || this.settle(item, outcomes[n]));
      this.options.announcer.publishEvents(events);
      return [...heldItems];
    } catch (error) {
      const refused = refusedByDatabase(error);
      for (const item of batch) {
        this.forget(item);
        if (refused) item.settle(undefined);
        else item.fail(error);
      }
      return [];
    }
  }

  /**
   * The batch's outcomes. A key whose record another request committed after the statement's snapshot and
   * before the statement took the key's lock is not seen, and its insert fails the whole statement (23505):
   * run once more, the statement sees that record and answers its item as a repeat. (Two requests with one
   * key in two lanes or processes, in flight together, do that; each would send the whole batch down the
   * general path.) Nothing of the failed statement was stored.
   */
  private async store(batch: Waiting[], heldWaitMs: number | undefined): Promise<BatchResult> {
    const { db, method, announcer } = this.options;
    try {
      return await storeBatch(db, batch, method, announcer.notice, heldWaitMs);
    } catch (error) {
      if (!(error instanceof UniqueViolationError && error.constraint === KEY_RECORD)) throw error;
      return storeBatch(db, batch, method, announcer.notice, heldWaitMs);
    }
  }

  /** A send whose request's deadline passed starts no statement: the general path answers it 503 at once. */
  private late(item: Waiting): boolean {
    if (!item.deadlinePassed()) return false;
    this.settle(item, undefined);
    return true;
  }

  /** Its key leaves the lane first: the caller may send it again as soon as it has its outcome. */
  private settle(item: Waiting, outcome: OnceOutcome): void {
    this.forget(item);
    item.settle(outcome);
  }

  /**
   * Sends whose request's deadline passed while they waited start no statement: they take the general path,
   * which answers 503 at once (nothing stored). So a queue behind a slow database holds no send past its
   * request's deadline. Returns how many sends are left.
   */
  private dropLate(): number {
    const waiting: Waiting[] = [];
    for (const item of this.queue) if (!this.late(item)) waiting.push(item);
    this.queue = waiting;
    return waiting.length;
  }

  private forget(item: Waiting): void {
    if (item.claim) this.keys.delete(keyOf(item.claim));
  }

  /** The next batch from the queue's head: at least one send, then as many as fit. */
  private take(): Waiting[] {
    const { maxItems, maxBytes } = this.options;
    let bytes = this.queue[0]!.message.ciphertext.byteLength;
    let count = 1;
    while (count < this.queue.length && count < maxItems) {
      const next = this.queue[count]!.message.ciphertext.byteLength;
      if (bytes + next > maxBytes) break;
      bytes += next;
      count++;
    }
    return this.queue.splice(0, count);
  }
}

const keyOf = ({ scope }: KeyClaim) => `${scope[0]} ${scope[2]}`;
