import { DatabaseError, isLockTimeout, isSqlState, UniqueViolationError, type Queryable } from "../db/driver.js";
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

export interface SendLaneOptions {
  /** The pool the batches run on (not a request's transaction). */
  db: Queryable;
  /** The most sends one statement stores. */
  maxItems: number;
  /** The most ciphertext bytes one statement carries (a larger single send still goes alone). */
  maxBytes: number;
  /** The longest one wait of a statement of held sends for their conversation's row lasts (it may wait again). */
  heldWaitMs: number;
  /** The method the keys belong to (their scope), the XRPC NSID. */
  method: string;
  /** Told how many sends each statement answered, held ones not counted (a later statement answers them). */
  observe(items: number): void;
  /** Wakes the streams of what each batch stored: a stored send needs no announcing of its own. */
  announcer: BatchAnnouncer;
}

/** A blocked conversation's held sends, not stored yet (the sweep may leave none: then it just unblocks). */
interface HeldGroup {
  convo: string;
  items: Waiting[];
}

interface Waiting extends BatchItem {
  deadlinePassed(): boolean;
  settle(outcome: OnceOutcome): void;
  fail(error: unknown): void;
}

/** The repeats of a key in the lane waiting for it to leave, each told whether its record was committed then. */
type Repeats = ((recorded: boolean) => void)[];

/**
 * How often the sends of blocked conversations (held sends waiting their turn, later sends waiting aside) are
 * checked for their deadline: otherwise only their turn or their conversation's unblocking would see it, and a row
 * held long (or many held conversations taking turns) would keep a send seconds past its deadline.
 */
const PARKED_SWEEP_MS = 50;

/** The primary key of idempotency_keys: a batch's record insert that meets one committed after its snapshot. */
const KEY_RECORD = "idempotency_keys_pkey";

/** 57014: the statement ran past its timeout (overload): sending each item again alone would add to it. */
const QUERY_CANCELED = "57014";

/** The database refused the statement (a SQLSTATE): nothing of it was stored, and no overload says to hold back. */
const refusedByDatabase = (error: unknown) =>
  error instanceof DatabaseError && isSqlState(error.code) && error.code !== QUERY_CANCELED;

/**
 * One lane of group commit: one batch in flight at a time. Only answered sends were stored: a send's
 * promise settles after the statement that stored it returned. If the statement failed, nothing of it
 * was stored: when the database refused it (a key conflict or any other error with a SQLSTATE), each
 * send takes the general path alone, so a poisoned item fails alone; when the connection was lost or
 * the socket failed (the commit may or may not have happened) or the statement timed out, every send
 * fails as a lone one would.
 *
 * Sends whose conversation's row another transaction held (another instance's batch, say) come back
 * held. Their conversation is blocked: its later sends wait aside, in arrival order, while the lane goes
 * on with the others. The held sends are stored beside the lane, one conversation at a time, by a statement
 * that waits for the row (at most `heldWaitMs`; then the other held conversations take their turn, and it
 * waits again, until its sends' deadlines); then the conversation's waiting sends go back to the head of
 * the queue. So no send of a conversation is stored before an earlier one of this lane, and a row held long
 * costs other conversations at most a wait per turn, and only those whose sends are held too. A send of a
 * blocked conversation whose deadline passes is answered within PARKED_SWEEP_MS (the general path answers
 * 503, nothing stored). (Sends the lane leaves to the general path, a refused statement's for one, keep
 * no place in this order.)
 *
 * One key is in the lane once: a send whose key is already in it waits until that send was answered. Then,
 * if the key's record was committed, it takes the general path, which replays it; if not, it joins the lane,
 * behind every send already in it, and claims the key there. Not sooner, and never on the general path while
 * the key may still be claimed: a key waiting in the lane holds no lock, and its repeat, claiming it on the
 * general path, could be stored before earlier sends of its conversation still waiting. (A key sent to two
 * conversations lands in two lanes; the second batch finds its advisory lock taken.)
 */
export class SendLane {
  private queue: Waiting[] = [];
  private flushing = false;
  /** The keys (caller, key) in the lane (queued, waiting aside, held or in flight), each with its waiting repeats. */
  private readonly keys = new Map<string, Repeats>();
  /** The blocked conversations (their held sends are not stored yet), each with its later sends, in order. */
  private readonly blocked = new Map<string, Waiting[]>();
  /** Held sends not stored yet, a group per conversation, in the order they came back. */
  private readonly heldGroups: HeldGroup[] = [];
  private storingHeld = false;
  /** Set while any conversation is blocked: the next check of its sends' deadlines. */
  private sweep: ReturnType<typeof setTimeout> | undefined;

  constructor(private readonly options: SendLaneOptions) {}

  send(message: SendMessage, claim: KeyClaim | undefined, deadlinePassed: () => boolean): Promise<OnceOutcome> {
    const key = claim && keyOf(claim);
    const repeats = key === undefined ? undefined : this.keys.get(key);
    if (repeats) {
      // Recorded: the general path replays it. Not: this repeat takes the key's place in the lane (see `leave`).
      const left = new Promise<boolean>((resolve) => repeats.push(resolve));
      return left.then((recorded) => (recorded ? undefined : this.enqueue(message, claim, deadlinePassed)));
    }
    if (key !== undefined) this.keys.set(key, []);
    return this.enqueue(message, claim, deadlinePassed);
  }

  /** Queues a send whose key (if any) is the lane's already. */
  private enqueue(message: SendMessage, claim: KeyClaim | undefined, deadlinePassed: () => boolean) {
    return new Promise<OnceOutcome>((settle, fail) => {
      this.queue.push({ message, claim, deadlinePassed, settle, fail });
      this.startFlush();
    });
  }

  private startFlush(): void {
    if (this.flushing) return;
    this.flushing = true;
    // Not a timer: sends read in this turn of the event loop join the first batch, and none waits.
    queueMicrotask(() => void this.flush());
  }

  /** Batches until the queue is empty (sends of blocked conversations wait aside: their unblocking flushes). */
  private async flush(): Promise<void> {
    try {
      for (let batch = this.take(); batch.length > 0; batch = this.take()) {
        const held = await this.run(batch);
        if (held.length === 0) continue;
        for (const items of byConversation(this.live(held))) this.hold({ convo: items[0]!.message.convoId, items });
      }
    } finally {
      this.flushing = false;
    }
  }

  /** Blocks `group`'s conversation and queues the group to be stored by a statement that waits for its row. */
  private hold(group: HeldGroup): void {
    this.blocked.set(group.convo, []);
    this.heldGroups.push(group);
    this.sweep ??= setTimeout(this.sweepBlocked, PARKED_SWEEP_MS);
    if (!this.storingHeld) void this.storeHeld();
  }

  /**
   * Stores the held groups in turn, one statement at a time. A group whose wait for its row ran out goes to the
   * back of the line, its conversation still blocked: a row held long delays the other held conversations by one
   * wait per turn, not by all of its own. A conversation is unblocked once its group is answered.
   */
  private async storeHeld(): Promise<void> {
    this.storingHeld = true;
    try {
      for (let group = this.heldGroups.shift(); group; group = this.heldGroups.shift()) {
        let left: Waiting[] | undefined;
        try {
          left = await this.storeHeldGroup(group.items);
        } finally {
          if (left) this.heldGroups.push({ convo: group.convo, items: left });
          else this.unblock(group.convo);
        }
      }
    } finally {
      this.storingHeld = false;
    }
  }

  /**
   * One try at a conversation's held sends, waiting for its row: the sends left to try again when the wait ran out
   * (those whose deadline has not passed), else undefined. A send held again (its conversation went away while
   * the statement waited) is answered on the general path, which says so.
   */
  private async storeHeldGroup(group: Waiting[]): Promise<Waiting[] | undefined> {
    const items = this.live(group);
    if (items.length === 0) return undefined;
    try {
      // Held again: its conversation went away while the statement waited.
      for (const item of this.answer(items, await this.store(items, this.options.heldWaitMs))) {
        this.settle(item, undefined);
      }
      return undefined;
    } catch (error) {
      if (isLockTimeout(error)) return items;
      this.failAll(items, error);
      return undefined;
    }
  }

  /** `convo`'s held sends are answered: its waiting sends go to the head of the queue, before any later ones. */
  private unblock(convo: string): void {
    const waiting = this.blocked.get(convo) ?? [];
    this.blocked.delete(convo);
    if (waiting.length > 0) this.queue = [...waiting, ...this.queue];
    if (this.queue.length > 0) this.startFlush();
  }

  /** Stores `batch` (skipping held rows) and settles each send but the held ones, which it returns. */
  private async run(batch: Waiting[]): Promise<Waiting[]> {
    try {
      return this.answer(batch, await this.store(batch));
    } catch (error) {
      this.failAll(batch, error);
      return [];
    }
  }

  /** Settles each send of `batch` by its outcome, except the held ones, which it returns. */
  private answer(batch: Waiting[], { outcomes, held, events }: BatchResult): Waiting[] {
    const heldItems = held.map((n) => batch[n]!);
    const skip = heldItems.length > 0 ? new Set(heldItems) : undefined;
    batch.forEach((item, n) => skip?.has(item) || this.settle(item, outcomes[n]));
    // After the answers: a callback that threw could not fail a send that was stored.
    if (heldItems.length < batch.length) this.options.observe(batch.length - heldItems.length);
    this.options.announcer.publishEvents(events);
    return heldItems;
  }

  /** The statement failed: nothing of it was stored (see the class comment). */
  private failAll(batch: Waiting[], error: unknown): void {
    const refused = refusedByDatabase(error);
    for (const item of batch) {
      this.leave(item, false);
      if (refused) item.settle(undefined);
      else item.fail(error);
    }
  }

  /**
   * The batch's outcomes. A key whose record another request committed after the statement's snapshot and
   * before the statement took the key's lock is not seen, and its insert fails the whole statement (23505):
   * run once more, the statement sees that record and answers its item as a repeat. (Two requests with one
   * key in two lanes or processes, in flight together, do that; each would send the whole batch down the
   * general path.) Nothing of the failed statement was stored.
   */
  private async store(batch: Waiting[], heldWaitMs?: number): Promise<BatchResult> {
    const { db, method, announcer } = this.options;
    try {
      return await storeBatch(db, batch, method, announcer.notice, heldWaitMs);
    } catch (error) {
      if (!(error instanceof UniqueViolationError && error.constraint === KEY_RECORD)) throw error;
      return storeBatch(db, batch, method, announcer.notice, heldWaitMs);
    }
  }

  /**
   * The next batch: the queue's sends in order, past those whose deadline passed (they start no statement: the
   * general path answers them 503 at once, nothing stored, so a queue behind a slow database holds no send long
   * past its deadline) and those of blocked conversations (they wait aside: see sweepBlocked), up to `maxItems`
   * and `maxBytes` (its first send whatever its size). It stops at the first send that does not fit, so no send
   * of a conversation goes before an earlier one.
   */
  private take(): Waiting[] {
    const { maxItems, maxBytes } = this.options;
    const batch: Waiting[] = [];
    const rest: Waiting[] = [];
    let bytes = 0;
    let full = false;
    for (const item of this.queue) {
      if (this.late(item)) continue;
      const blocked = this.blocked.get(item.message.convoId);
      if (blocked) {
        blocked.push(item);
        continue;
      }
      const size = item.message.ciphertext.byteLength;
      full ||= batch.length === maxItems || (batch.length > 0 && bytes + size > maxBytes);
      if (full) {
        rest.push(item);
        continue;
      }
      batch.push(item);
      bytes += size;
    }
    this.queue = rest;
    return batch;
  }

  /**
   * Answers the sends of blocked conversations whose deadline passed: those waiting aside and those of held groups
   * waiting their turn (not the group in a statement), keeping the others' order. A group left empty unblocks its
   * conversation at once. Checks again while any conversation is blocked.
   */
  private readonly sweepBlocked = (): void => {
    this.sweep = undefined;
    for (const [convo, waiting] of this.blocked) this.blocked.set(convo, this.live(waiting));
    for (const group of [...this.heldGroups]) {
      group.items = this.live(group.items);
      if (group.items.length > 0) continue;
      this.heldGroups.splice(this.heldGroups.indexOf(group), 1);
      this.unblock(group.convo);
    }
    if (this.blocked.size > 0) this.sweep = setTimeout(this.sweepBlocked, PARKED_SWEEP_MS);
  };

  /** `items` but those whose deadline passed (each answered: see `late`), in order. */
  private live(items: readonly Waiting[]): Waiting[] {
    return items.filter((item) => !this.late(item));
  }

  /** A send whose request's deadline passed starts no statement: the general path answers it 503 at once. */
  private late(item: Waiting): boolean {
    if (!item.deadlinePassed()) return false;
    this.settle(item, undefined);
    return true;
  }

  /** Its key leaves the lane first: the caller may send it again as soon as it has its outcome. */
  private settle(item: Waiting, outcome: OnceOutcome): void {
    // Stored now, or a repeat of a committed record: either way the key's record is committed.
    this.leave(item, outcome !== undefined);
    item.settle(outcome);
  }

  /**
   * `item`'s key leaves the lane, `recorded` or not (a committed record of it exists). Recorded, its repeats all go
   * on to replay it. Not, the first repeat takes its place in the lane and the others wait for that one: one
   * statement per round, not one each.
   */
  private leave(item: Waiting, recorded: boolean): void {
    if (!item.claim) return;
    const key = keyOf(item.claim);
    const repeats = this.keys.get(key) ?? [];
    if (!recorded && repeats.length > 0) {
      this.keys.set(key, repeats.slice(1));
      repeats[0]!(false);
      return;
    }
    this.keys.delete(key);
    for (const repeat of repeats) repeat(true);
  }
}

const keyOf = ({ scope }: KeyClaim) => `${scope[0]} ${scope[2]}`;

/** `items` in groups by conversation, each in its items' order. */
function byConversation(items: readonly Waiting[]): Waiting[][] {
  const groups = new Map<string, Waiting[]>();
  for (const item of items) {
    const group = groups.get(item.message.convoId);
    if (group) group.push(item);
    else groups.set(item.message.convoId, [item]);
  }
  return [...groups.values()];
}
