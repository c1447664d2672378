/**
 * Group commit when another transaction holds a conversation's row (another instance's batch, a commit
 * being processed), on real PostgreSQL: the batch answers everything else at once; the held conversation's
 * sends are stored together by a statement that waits for the row, beside the lane, again after each wait
 * that ran out, until their deadline; later sends to it wait behind them, in order; other conversations are
 * not held up meanwhile.
 */
import { afterAll, describe, expect, it } from "vitest";
import { SEND_HELD_BATCH_SQL } from "../../src/services/sendBatch.js";
import { testApp, testDatabase, unique } from "../helpers/context.js";
import { withStatementHook } from "../helpers/faults.js";
import { conversationLockWaiters, holdConversationRow, whileRowsHeld } from "../helpers/rowLock.js";
import {
  claimOf,
  coalescer,
  message,
  pending,
  seqOf,
  soon,
  statementWaits,
  uncommittedKeyRecord,
} from "./batchFixtures.js";
import { newConversation } from "./fixtures.js";

const db = testDatabase(8);
afterAll(() => db.close());
const { app } = testApp(db);

describe("sends to a conversation another transaction holds (real PostgreSQL)", () => {
  it("answers the others at once, then stores the held sends together, and later sends to it after them, in order", async () => {
    const alice = unique("did:plc:heldo");
    const held = await newConversation(app, alice);
    const free = await newConversation(app, alice);
    await whileRowsHeld(db, [held], async ([holder]) => {
      const { sends, sizes } = coalescer(db, 128, 4 << 20, 10_000);
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
    });
  });

  it("does not hold an outsider's send to a held conversation: the general path refuses it at once", async () => {
    const alice = unique("did:plc:heldm");
    const mallory = unique("did:plc:heldx");
    const held = await newConversation(app, alice);
    await whileRowsHeld(db, [held], async ([holder]) => {
      const { sends } = coalescer(db, 128, 4 << 20, 10_000);
      // Held, it would wait for the row (10 s a wait) and block alice's conversation in the lane meanwhile.
      expect(await sends.send(message(held, mallory))).toBeUndefined();
      const alices = sends.send(message(held, alice));
      await conversationLockWaiters(db, holder.ctid);
      holder.release();
      expect(seqOf(await alices)).toBe(1);
    });
  });

  it("keeps storing other conversations' sends while a held conversation's statement waits", async () => {
    const alice = unique("did:plc:heldl");
    const held = await newConversation(app, alice);
    const other = await newConversation(app, alice);
    await whileRowsHeld(db, [held], async ([holder]) => {
      const { sends } = coalescer(db, 128, 4 << 20, 10_000);
      const waiting = sends.send(message(held, alice));
      await conversationLockWaiters(db, holder.ctid);
      // One after another, each its own statement: none waits for the held row.
      for (let seq = 1; seq <= 5; seq++) expect(seqOf(await sends.send(message(other, alice)))).toBe(seq);
      expect(await pending(waiting)).toBe(true);
      holder.release();
      expect(seqOf(await waiting)).toBe(1);
    });
  });

  it("waits again each time a wait for the row runs out, keeping later sends behind, until the sends' deadline", async () => {
    const alice = unique("did:plc:heldw");
    const held = await newConversation(app, alice);
    await whileRowsHeld(db, [held], async ([holder]) => {
      let statements = 0;
      const counted = withStatementHook(db, async (sql) => void (sql === SEND_HELD_BATCH_SQL && statements++));
      const { sends, sizes } = coalescer(counted, 128, 4 << 20, 100);
      const first = sends.send(message(held, alice), claimOf(alice, "w1"));
      await conversationLockWaiters(db, holder.ctid);
      const second = sends.send(message(held, alice));
      // Several waits of 100 ms run out meanwhile; neither send is answered, nor the second stored first.
      await new Promise((resolve) => setTimeout(resolve, 450));
      expect(await pending(first)).toBe(true);
      expect(await pending(second)).toBe(true);
      holder.release();
      expect([seqOf(await first), seqOf(await second)]).toEqual([1, 2]);
      expect(statements).toBeGreaterThan(2);
      expect(sizes).toEqual([1, 1]);

      // Held past its request's deadline: answered on the general path (503 there), its key out of the lane.
      const again = await holdConversationRow(db, held);
      const deadline = Date.now() + 300;
      expect(await sends.send(message(held, alice), claimOf(alice, "w2"), () => Date.now() > deadline)).toBe(undefined);
      again.release();
      await again.done;
      expect(seqOf(await sends.send(message(held, alice), claimOf(alice, "w2")))).toBe(3);
    });
  });

  it("answers a send waiting behind a held conversation at its deadline; a retry of it waits behind the held send", async () => {
    const alice = unique("did:plc:heldp");
    const held = await newConversation(app, alice);
    await whileRowsHeld(db, [held], async ([holder]) => {
      const { sends } = coalescer(db);
      const first = sends.send(message(held, alice), claimOf(alice, "p1"));
      await conversationLockWaiters(db, holder.ctid);
      const deadline = Date.now() + 200;
      const late = message(held, alice);
      const parked = sends.send(late, claimOf(alice, "p2"), () => Date.now() > deadline);
      // The client's retry of it, while it waits.
      const repeat = sends.send(late, claimOf(alice, "p2"));
      // The general path's outcome (503 there, nothing stored), while the held send still waits for the row.
      expect(await soon(parked)).toBe(undefined);
      expect(await pending(first)).toBe(true);
      // Its retry waits aside in the lane, behind the held send.
      expect(await pending(repeat)).toBe(true);
      holder.release();
      expect(seqOf(await first)).toBe(1);
      expect(seqOf(await repeat)).toBe(2);
    });
  });

  it("stores held sends of two conversations one conversation after the other, each before its later sends", async () => {
    const alice = unique("did:plc:held2");
    const [x, y] = [await newConversation(app, alice), await newConversation(app, alice)];
    await whileRowsHeld(db, [x, y], async ([holdX, holdY]) => {
      const { sends } = coalescer(db, 128, 4 << 20, 10_000);
      const [x1, y1] = [sends.send(message(x, alice)), sends.send(message(y, alice))];
      await conversationLockWaiters(db, holdX.ctid);
      const y2 = sends.send(message(y, alice));
      holdY.release();
      await holdY.done;
      // Y's held send waits its turn behind X's; Y's later send waits behind it.
      expect(await pending(y2)).toBe(true);
      holdX.release();
      expect([seqOf(await x1), seqOf(await y1), seqOf(await y2)]).toEqual([1, 1, 2]);
    });
  });

  it("gives the other held conversations their turn while a row stays held past its wait", async () => {
    const alice = unique("did:plc:heldt");
    const [x, y] = [await newConversation(app, alice), await newConversation(app, alice)];
    await whileRowsHeld(db, [x, y], async ([holdX, holdY]) => {
      const { sends } = coalescer(db, 128, 4 << 20, 100);
      const [x1, y1] = [sends.send(message(x, alice)), sends.send(message(y, alice))];
      await conversationLockWaiters(db, holdX.ctid);
      holdY.release();
      await holdY.done;
      // X's statement waits first (its sends came first); once its wait runs out, Y's takes its turn.
      expect(seqOf(await y1)).toBe(1);
      expect(await pending(x1)).toBe(true);
      holdX.release();
      expect(seqOf(await x1)).toBe(1);
    });
  });

  it("sends a repeat of a waiting send's key down the general path only once that send is stored", async () => {
    const alice = unique("did:plc:heldk");
    const held = await newConversation(app, alice);
    await whileRowsHeld(db, [held], async ([holder]) => {
      const { sends } = coalescer(db, 128, 4 << 20, 100);
      const first = sends.send(message(held, alice));
      await conversationLockWaiters(db, holder.ctid);
      const answered: string[] = [];
      const keyed = sends.send(message(held, alice), claimOf(alice, "k1")).then((outcome) => {
        answered.push("keyed");
        return outcome;
      });
      // A client's retry of the waiting send: claiming the key now, it could be stored first.
      const repeat = sends.send(message(held, alice), claimOf(alice, "k1")).then((outcome) => {
        answered.push("repeat");
        return outcome;
      });
      expect(await pending(repeat)).toBe(true);
      holder.release();
      expect([seqOf(await first), seqOf(await keyed), await repeat]).toEqual([1, 2, undefined]);
      expect(answered).toEqual(["keyed", "repeat"]);
    });
  });

  it("sets the wait back once it holds the rows: a later wait of the same statement is not cut short", async () => {
    const alice = unique("did:plc:heldr");
    const held = await newConversation(app, alice);
    const holder = await holdConversationRow(db, held);
    // A record of the send's key committed only after the statement's snapshot, its advisory lock free: the
    // statement's insert of the key waits for it (longer than the wait for the row), then meets it (23505), and
    // the statement, run once more, answers the send as that record's repeat: two runs. A wait cut short would
    // fail the first (55P03) and need a third.
    const record = uncommittedKeyRecord(db, alice, "r1");
    await record.held;
    try {
      let statements = 0;
      const counted = withStatementHook(db, async (sql) => void (sql === SEND_HELD_BATCH_SQL && statements++));
      const { sends } = coalescer(counted, 128, 4 << 20, 500);
      const outcome = sends.send(message(held, alice), claimOf(alice, "r1"));
      await conversationLockWaiters(db, holder.ctid);
      holder.release();
      await holder.done;
      await statementWaits(db, SEND_HELD_BATCH_SQL);
      await new Promise((resolve) => setTimeout(resolve, 800));
      record.release();
      expect(await outcome).toEqual({
        stored: { requestHash: "a".repeat(64), statusCode: 200, response: '{"seq":0}' },
      });
      expect(statements).toBe(2);
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
    const { sends } = coalescer(db, 128, 4 << 20, 10_000);
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
