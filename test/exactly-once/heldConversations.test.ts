/**
 * Group commit when another transaction holds a conversation's row (another instance's batch, a commit
 * being processed), on real PostgreSQL: the batch answers everything else at once; the held conversation's
 * sends are stored together by a statement that waits for the row, beside the lane, bounded; later sends
 * to it wait behind them, in order; other conversations are not held up meanwhile.
 */
import { afterAll, describe, expect, it } from "vitest";
import { SEND_HELD_BATCH_SQL } from "../../src/services/sendBatch.js";
import { testApp, testDatabase, unique } from "../helpers/context.js";
import { conversationLockWaiters, holdRowLock } from "../helpers/rowLock.js";
import { claimOf, coalescer, message, seqOf, statementWaits, uncommittedKeyRecord } from "./batchFixtures.js";
import { newConversation } from "./fixtures.js";

const db = testDatabase(8);
afterAll(() => db.close());
const { app } = testApp(db);

/** Holds `convoId`'s row until released; resolves with its ctid once held. */
async function holdConversation(convoId: string) {
  const holder = holdRowLock<{ ctid: string }>(db, `SELECT ctid::text FROM conversations WHERE id = $1 FOR UPDATE`, [
    convoId,
  ]);
  const [row] = await holder.held;
  return { ...holder, ctid: row!.ctid };
}

/** Whether `promise` is still pending after everything already queued has run. */
async function pending(promise: Promise<unknown>): Promise<boolean> {
  let settled = false;
  void promise.then(
    () => (settled = true),
    () => (settled = true),
  );
  await new Promise((resolve) => setImmediate(resolve));
  return !settled;
}

describe("sends to a conversation another transaction holds (real PostgreSQL)", () => {
  it("answers the others at once, then stores the held sends together, and later sends to it after them, in order", async () => {
    const alice = unique("did:plc:heldo");
    const held = await newConversation(app, alice);
    const free = await newConversation(app, alice);
    const holder = await holdConversation(held);
    try {
      const { sends, sizes } = coalescer(db);
      const first = [1, 2, 3].map(() => sends.send(message(held, alice)));
      expect(seqOf(await sends.send(message(free, alice)))).toBe(1);
      await conversationLockWaiters(db, holder.ctid);
      // Sent while the held sends wait: it waits behind them, neither stored first nor sent down the general path.
      const later = sends.send(message(held, alice));
      expect(await pending(later)).toBe(true);
      holder.release();
      expect((await Promise.all(first)).map(seqOf)).toEqual([1, 2, 3]);
      expect(seqOf(await later)).toBe(4);
      expect(sizes).toEqual([1, 3, 1]);
    } finally {
      holder.release();
      await holder.done;
    }
  });

  it("keeps storing other conversations' sends while a held conversation's statement waits", async () => {
    const alice = unique("did:plc:heldl");
    const held = await newConversation(app, alice);
    const other = await newConversation(app, alice);
    const holder = await holdConversation(held);
    try {
      const { sends } = coalescer(db, 128, 4 << 20, 10_000);
      const waiting = sends.send(message(held, alice));
      await conversationLockWaiters(db, holder.ctid);
      // One after another, each its own statement: none waits for the held row.
      for (let seq = 1; seq <= 5; seq++) expect(seqOf(await sends.send(message(other, alice)))).toBe(seq);
      expect(await pending(waiting)).toBe(true);
      holder.release();
      expect(seqOf(await waiting)).toBe(1);
    } finally {
      holder.release();
      await holder.done;
    }
  });

  it("sends the held sends down the general path once a wait runs out, and frees their keys", async () => {
    const alice = unique("did:plc:heldw");
    const held = await newConversation(app, alice);
    const holder = await holdConversation(held);
    try {
      const { sends, sizes } = coalescer(db);
      const outcomes = await Promise.all([
        sends.send(message(held, alice), claimOf(alice, "w1")),
        sends.send(message(held, alice)),
      ]);
      expect(outcomes).toEqual([undefined, undefined]);
      expect(sizes).toEqual([]);
      holder.release();
      await holder.done;
      // The key left the lane: sent again, it is stored by a batch (a key still in the lane would come back at once).
      expect(seqOf(await sends.send(message(held, alice), claimOf(alice, "w1")))).toBe(1);
    } finally {
      holder.release();
      await holder.done;
    }
  });

  it("sets the wait back once it holds the rows: a later wait of the same statement is not cut short", async () => {
    const alice = unique("did:plc:heldr");
    const held = await newConversation(app, alice);
    const holder = await holdConversation(held);
    // A record of the send's key committed only after the statement's snapshot, its advisory lock free: the
    // statement's insert of the key waits for it (longer than the 250 ms wait for the row), then meets it (23505),
    // and the statement, run again, answers the send as that record's repeat.
    const record = uncommittedKeyRecord(db, alice, "r1");
    await record.held;
    try {
      const { sends } = coalescer(db);
      const outcome = sends.send(message(held, alice), claimOf(alice, "r1"));
      await conversationLockWaiters(db, holder.ctid);
      holder.release();
      await holder.done;
      await statementWaits(db, SEND_HELD_BATCH_SQL);
      await new Promise((resolve) => setTimeout(resolve, 400));
      record.release();
      expect(await outcome).toEqual({
        stored: { requestHash: "a".repeat(64), statusCode: 200, response: '{"seq":0}' },
      });
    } finally {
      holder.release();
      record.release();
      await Promise.all([holder.done, record.done]);
    }
  });

  it("answers a held send on the general path when its conversation went away while the statement waited", async () => {
    const alice = unique("did:plc:heldd");
    const doomed = await newConversation(app, alice);
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let locked!: () => void;
    const isLocked = new Promise<void>((resolve) => (locked = resolve));
    const removal = db.transaction(async (tx) => {
      await tx.query(`SELECT 1 FROM conversations WHERE id = $1 FOR UPDATE`, [doomed]);
      locked();
      await released;
      await tx.query(`DELETE FROM conversations WHERE id = $1`, [doomed]);
    });
    await isLocked;
    const { sends } = coalescer(db);
    const outcome = sends.send(message(doomed, alice), claimOf(alice, "d1"));
    await statementWaits(db, SEND_HELD_BATCH_SQL);
    release();
    await removal;
    expect(await outcome).toBeUndefined();
    // Its key left the lane: sent to a conversation that exists, a batch stores it (one still in the lane would
    // come back at once, for the general path).
    const other = await newConversation(app, alice);
    expect(seqOf(await sends.send(message(other, alice), claimOf(alice, "d1")))).toBe(1);
  });
});
