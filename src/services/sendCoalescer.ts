import type { KeyClaim, OnceOutcome } from "./idempotencyKeys.js";
import type { SendMessage } from "./messages.js";
import { SendLane, type SendLaneOptions } from "./sendLane.js";

export interface SendCoalescerOptions extends SendLaneOptions {
  /** How many batches may be in flight at once, each for its own share of the conversations. */
  lanes: number;
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
 * they are stored together, in order, by a statement that waits for it, until their deadlines (see SendLane). What a
 * batch stored is announced by the batch: its statement notifies other instances, and its events go to
 * this instance's streams as soon as it committed.
 *
 * @example
 * const sends = new SendCoalescer({ db, maxItems: 128, maxBytes: 4 << 20, heldWaitMs: 250, lanes: 2, method, observe, announcer: events });
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
