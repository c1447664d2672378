/**
 * A client's retry (the same key) of a send still in the group-commit lane, on real PostgreSQL: it joins the lane
 * once that send is answered, behind every send already in it, so it is never stored before an earlier send of its
 * conversation; and a send of a blocked conversation, or its retry, is answered by its own deadline, whatever the
 * other held conversations' statements do. (Reproductions from a review of the lane: each failed before.)
 */
import { afterAll, describe, expect, it } from "vitest";
import type { Queryable } from "../../src/db/driver.js";
import { claimKey, type KeyClaim, type OnceOutcome } from "../../src/services/idempotencyKeys.js";
import { sendMessage, type SendMessage } from "../../src/services/messages.js";
import { SEND_BATCH_SQL } from "../../src/services/sendBatch.js";
import { testApp, testDatabase, unique } from "../helpers/context.js";
import { withStatementHook } from "../helpers/faults.js";
import { conversationLockWaiters, holdConversationRow, whileRowsHeld } from "../helpers/rowLock.js";
import { claimOf, coalescer, message, pending, seqOf, soon } from "./batchFixtures.js";
import { newConversation } from "./fixtures.js";

const db = testDatabase(8);
afterAll(() => db.close());
const { app } = testApp(db);

/** The seq a send ends up with: the lane's, or (undefined outcome) the general path's, as the middleware runs it. */
async function storedSeq(outcome: OnceOutcome, sent: SendMessage, claim: KeyClaim): Promise<number | undefined> {
  if (outcome !== undefined) return seqOf(outcome);
  const stored = await db.transaction(async (tx: Queryable) => (await claimKey(tx, claim)) ?? sendMessage(tx, sent));
  return "seq" in stored ? stored.seq : undefined;
}

/** Batch statements wait while `hold` is set, until `release()`. */
function stalledBatches() {
  let release = () => {};
  let gate: Promise<void> | undefined;
  const stalled = withStatementHook(db, async (sql) => {
    if (sql === SEND_BATCH_SQL && gate) await gate;
  });
  return {
    db: stalled,
    hold: () => void (gate = new Promise<void>((resolve) => (release = resolve))),
    release: () => {
      gate = undefined;
      release();
    },
  };
}

describe("a retry of a send still in the lane (real PostgreSQL)", () => {
  it("is stored after the sends that waited aside before it, once the held conversation unblocks", async () => {
    const alice = unique("did:plc:retry1");
    const [x, y] = [await newConversation(app, alice), await newConversation(app, alice)];
    const batches = stalledBatches();
    const holder = await holdConversationRow(db, x);
    try {
      const { sends } = coalescer(batches.db, 128, 4 << 20, 10_000);
      const held = sends.send(message(x, alice));
      await conversationLockWaiters(db, holder.ctid);
      const earlier = sends.send(message(x, alice));
      const deadline = Date.now() + 150;
      const late = message(x, alice);
      const answeredLate = sends.send(late, claimOf(alice, "K"), () => Date.now() > deadline);
      const retry = sends.send(late, claimOf(alice, "K"));
      expect(await soon(answeredLate)).toBe(undefined);
      // The lane is busy with another conversation's batch when x unblocks.
      batches.hold();
      const other = sends.send(message(y, alice));
      holder.release();
      expect(seqOf(await held)).toBe(1);
      const retried = retry.then((outcome) => storedSeq(outcome, late, claimOf(alice, "K")));
      expect(await pending(retried)).toBe(true);
      batches.release();
      expect(seqOf(await other)).toBe(1);
      expect({ earlier: seqOf(await earlier), retry: await retried }).toEqual({ earlier: 2, retry: 3 });
    } finally {
      holder.release();
      batches.release();
      await holder.done;
    }
  });

  it("is stored after an earlier send of its conversation still queued when the first was answered late", async () => {
    const alice = unique("did:plc:retry2");
    const [x, y] = [await newConversation(app, alice), await newConversation(app, alice)];
    const batches = stalledBatches();
    try {
      // One send per batch: behind a stalled batch, the queue keeps the sends that do not fit.
      const { sends } = coalescer(batches.db, 1, 4 << 20, 10_000);
      batches.hold();
      const first = sends.send(message(y, alice));
      const second = sends.send(message(y, alice));
      const earlier = sends.send(message(x, alice));
      const deadline = Date.now() + 100;
      const late = message(x, alice);
      const answeredLate = sends.send(late, claimOf(alice, "K"), () => Date.now() > deadline);
      const retry = sends.send(late, claimOf(alice, "K"));
      await new Promise((resolve) => setTimeout(resolve, 150));
      // The next batch takes `second` alone and answers the late send; `earlier` stays queued behind it.
      batches.release();
      batches.hold();
      expect(seqOf(await first)).toBe(1);
      expect(await soon(answeredLate)).toBe(undefined);
      const retried = retry.then((outcome) => storedSeq(outcome, late, claimOf(alice, "K")));
      batches.release();
      expect(seqOf(await second)).toBe(2);
      expect({ earlier: seqOf(await earlier), retry: await retried }).toEqual({ earlier: 1, retry: 2 });
    } finally {
      batches.release();
    }
  });

  it("is answered by its own deadline while another held conversation's statement waits, as is the send", async () => {
    const alice = unique("did:plc:retry3");
    const [first, second] = [await newConversation(app, alice), await newConversation(app, alice)];
    await whileRowsHeld(db, [first, second], async (holders) => {
      // Each wait for a row outlasts the test: only the deadline checks answer in time.
      const { sends } = coalescer(db, 128, 4 << 20, 60_000);
      const waiting = sends.send(message(first, alice), claimOf(alice, "t1"));
      const deadline = Date.now() + 200;
      const late = message(second, alice);
      const turn = sends.send(late, claimOf(alice, "t2"), () => Date.now() > deadline);
      const retryDeadline = Date.now() + 300;
      const retry = sends.send(late, claimOf(alice, "t2"), () => Date.now() > retryDeadline);
      expect(await soon(turn)).toBe(undefined);
      expect(await soon(retry)).toBe(undefined);
      expect(await pending(waiting)).toBe(true);
      for (const holder of holders) holder.release();
      expect(seqOf(await waiting)).toBe(1);
    });
  });
});

describe("a held conversation whose sends were all answered at their deadline", () => {
  it("is unblocked at once: a new send to it is stored while another conversation's statement still waits", async () => {
    const alice = unique("did:plc:retry4");
    const [first, second] = [await newConversation(app, alice), await newConversation(app, alice)];
    await whileRowsHeld(db, [first, second], async (holders) => {
      const { sends } = coalescer(db, 128, 4 << 20, 60_000);
      const waiting = sends.send(message(first, alice));
      const deadline = Date.now() + 200;
      const turn = sends.send(message(second, alice), undefined, () => Date.now() > deadline);
      await conversationLockWaiters(db, holders[0]!.ctid);
      expect(await soon(turn)).toBe(undefined);
      holders[1]!.release();
      await holders[1]!.done;
      expect(seqOf((await soon(sends.send(message(second, alice)))) as OnceOutcome)).toBe(1);
      expect(await pending(waiting)).toBe(true);
      holders[0]!.release();
      expect(seqOf(await waiting)).toBe(1);
    });
  });
});
