/**
 * One batch of sends, item by item, on real PostgreSQL: sends submitted in one turn of the event loop
 * are one statement; each item gets its own outcome (stored, a repeat's answer, or the general path)
 * and nothing in it waits for a conversation or a key another transaction holds (heldConversations.test.ts
 * follows a held conversation's items).
 */
import { afterAll, describe, expect, it } from "vitest";
import { DatabaseError, DatabaseUnavailableError, type Database } from "../../src/db/driver.js";
import { SEND_BATCH_SQL } from "../../src/services/sendBatch.js";
import { registerDevices, revokeDeviceRow } from "../devices/acting.js";
import { randomGroupId, testApp, testDatabase, unique } from "../helpers/context.js";
import { withStatementHook } from "../helpers/faults.js";
import { holdRowLock } from "../helpers/rowLock.js";
import { clientFor } from "../helpers/client.js";
import { claimOf, coalescer, message, METHOD, seqOf, statementWaits, uncommittedKeyRecord } from "./batchFixtures.js";

const SUITE = "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519";
const db = testDatabase(6);
afterAll(() => db.close());
const { app } = testApp(db);

async function convoOf(creator: string, members: string[] = []): Promise<{ id: string; groupId: string }> {
  const groupId = randomGroupId();
  const created = await clientFor(app, creator).createConvo({ groupId, cipherSuite: SUITE, initialMembers: members });
  expect(created.status).toBe(200);
  return { id: created.data.id, groupId };
}

describe("a batch of sends (real PostgreSQL)", () => {
  it("stores good items with gapless seqs in arrival order and sends each poisoned one to the general path", async () => {
    const alice = unique("did:plc:batcha");
    const bob = unique("did:plc:batchb");
    const mallory = unique("did:plc:batchm");
    await registerDevices(db, bob, "phone", "old");
    await revokeDeviceRow(db, bob, "old");
    const one = await convoOf(alice, [bob]);
    const two = await convoOf(alice);
    const { sends, sizes } = coalescer(db);

    const outcomes = await Promise.all([
      sends.send(message(one.id, alice)),
      sends.send(message(two.id, alice)),
      sends.send(message(one.id, mallory)), // not a member
      sends.send(message(one.id, alice, { epoch: 3 })), // ahead of the conversation's epoch
      sends.send(message(one.id, alice, { groupId: randomGroupId(), opaque: false })), // another group
      sends.send(message(one.id, bob, { senderDevice: "old" })), // revoked device
      sends.send(message(one.id, bob, { senderDevice: "unknown" })), // no such device
      sends.send(message(`${one.id}x`, alice)), // no such conversation
      sends.send(message(one.id, bob, { senderDevice: "phone" })),
      sends.send(message(two.id, alice)),
      sends.send(message(one.id, alice, { groupId: one.groupId, opaque: false })),
    ]);

    expect(sizes).toEqual([11]);
    expect(outcomes.map(seqOf)).toEqual([
      1,
      1,
      undefined,
      undefined,
      undefined,
      undefined,
      undefined,
      undefined,
      2,
      2,
      3,
    ]);
    const stored = await db.query<{ convo_id: string; seq: number; sender_device: string }>(
      `SELECT convo_id, seq::int, sender_device FROM messages WHERE convo_id = ANY($1) ORDER BY convo_id, seq`,
      [[one.id, two.id]],
    );
    expect(stored).toEqual(
      [
        { convo_id: one.id, seq: 1, sender_device: "" },
        { convo_id: one.id, seq: 2, sender_device: "phone" },
        { convo_id: one.id, seq: 3, sender_device: "" },
        { convo_id: two.id, seq: 1, sender_device: "" },
        { convo_id: two.id, seq: 2, sender_device: "" },
      ].sort((a, b) => a.convo_id.localeCompare(b.convo_id)),
    );
    const [events] = await db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM events WHERE convo_id = ANY($1) AND kind = 'message'`,
      [[one.id, two.id]],
    );
    expect(events!.n).toBe(5);
  });

  it("keeps a conversation id with a lone surrogate from failing the batch (jsonb refuses one)", async () => {
    const alice = unique("did:plc:batchu");
    const convo = await convoOf(alice);
    const { sends, sizes } = coalescer(db);
    const outcomes = await Promise.all([sends.send(message("\ud800x", alice)), sends.send(message(convo.id, alice))]);
    expect(sizes).toEqual([2]);
    expect(outcomes.map(seqOf)).toEqual([undefined, 1]);
  });

  it("keeps a conversation id with a NUL character from failing the batch (jsonb refuses \\u0000)", async () => {
    const alice = unique("did:plc:batchn");
    const convo = await convoOf(alice);
    const { sends, sizes } = coalescer(db);
    const outcomes = await Promise.all([sends.send(message("a\u0000b", alice)), sends.send(message(convo.id, alice))]);
    expect(sizes).toEqual([2]);
    expect(outcomes.map(seqOf)).toEqual([undefined, 1]);
  });

  it("answers keyed items with their own record, repeats with the committed answer, and stores each key once", async () => {
    const alice = unique("did:plc:batchk");
    const convo = await convoOf(alice);
    const { sends } = coalescer(db);
    const first = await sends.send(message(convo.id, alice), claimOf(alice, "k1"));
    expect(first && "sent" in first).toBe(true);

    const [repeat, fresh, sameKeyInBatch] = await Promise.all([
      sends.send(message(convo.id, alice), claimOf(alice, "k1")),
      sends.send(message(convo.id, alice), claimOf(alice, "k2")),
      sends.send(message(convo.id, alice), claimOf(alice, "k2")),
    ]);
    expect(repeat).toEqual({
      stored: { requestHash: "a".repeat(64), statusCode: 200, response: (first as { sent: string }).sent },
    });
    expect(seqOf(fresh)).toBe(2);
    // A key already in the lane waits for its send: stored, the general path replays it.
    expect(sameKeyInBatch).toBeUndefined();
    const keys = await db.query<{ key: string; response: string }>(
      // The sends' keys (createConvo, through the client, has one too).
      `SELECT key, response FROM idempotency_keys WHERE caller_did = $1 AND method = $2 ORDER BY key`,
      [alice, METHOD],
    );
    expect(keys).toEqual([
      { key: "k1", response: (first as { sent: string }).sent },
      { key: "k2", response: (fresh as { sent: string }).sent },
    ]);
  });

  it("sends an expired key's item to the general path, which takes the key over", async () => {
    const alice = unique("did:plc:batche");
    const convo = await convoOf(alice);
    await db.query(
      `INSERT INTO idempotency_keys (caller_did, method, key, request_hash, status_code, response, created_at, expires_at)
       VALUES ($1, $2, 'old', $3, 200, '{}', now() - interval '2 days', now() - interval '1 day')`,
      [alice, METHOD, "b".repeat(64)],
    );
    const { sends } = coalescer(db);
    expect(await sends.send(message(convo.id, alice), claimOf(alice, "old"))).toBeUndefined();
  });

  it("caps a batch by items and by bytes, and a send larger than the byte cap still goes, alone", async () => {
    const alice = unique("did:plc:batchc");
    const convo = await convoOf(alice);
    const { sends, sizes } = coalescer(db, 3, 100);
    const small = () => message(convo.id, alice, { ciphertext: new Uint8Array(30).fill(1) });
    const outcomes = await Promise.all([
      ...Array.from({ length: 4 }, () => sends.send(small())),
      sends.send(message(convo.id, alice, { ciphertext: new Uint8Array(500).fill(2) })),
      sends.send(small()),
    ]);
    expect(sizes).toEqual([3, 1, 1, 1]);
    expect(outcomes.map(seqOf)).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it("sends every item down the general path when the database refuses the statement, and fails them when it is lost", async () => {
    const alice = unique("did:plc:batchf");
    const convo = await convoOf(alice);
    let failure: Error = new DatabaseError("injected", "40001", undefined);
    const failing = withStatementHook(db, async (sql) => {
      if (sql === SEND_BATCH_SQL) throw failure;
    });
    const { sends } = coalescer(failing);
    expect(await Promise.all([sends.send(message(convo.id, alice)), sends.send(message(convo.id, alice))])).toEqual([
      undefined,
      undefined,
    ]);
    failure = new DatabaseUnavailableError("injected connection loss");
    await expect(sends.send(message(convo.id, alice))).rejects.toBe(failure);
    const [row] = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM messages WHERE convo_id = $1`, [
      convo.id,
    ]);
    expect(row!.n).toBe(0);
  });

  it("fails the sends, not re-sends them, when the statement's answer was lost to an error with no SQLSTATE (it may have committed)", async () => {
    const alice = unique("did:plc:batchl");
    const convo = await convoOf(alice);
    // The statement runs and commits; then the socket reports an error (a code, but not the server's SQLSTATE).
    const lost = new DatabaseError("read EHOSTUNREACH", "EHOSTUNREACH", undefined);
    const answerLost: Database = {
      ...db,
      query: async (text, params) => {
        const rows = await db.query(text, params);
        if (text === SEND_BATCH_SQL) throw lost;
        return rows as never;
      },
    };
    const { sends } = coalescer(answerLost);
    await expect(sends.send(message(convo.id, alice))).rejects.toBe(lost);
    const [row] = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM messages WHERE convo_id = $1`, [
      convo.id,
    ]);
    expect(row!.n).toBe(1);
  });

  it("runs the batch once more when a key's record committed after its snapshot (23505), not every item on the general path", async () => {
    const alice = unique("did:plc:batchr");
    const convo = await convoOf(alice);
    // A record the batch's snapshot misses and whose advisory lock is free: a claim that commits while the batch runs.
    const holder = uncommittedKeyRecord(db, alice, "late");
    await holder.held;
    const { sends, sizes } = coalescer(db);
    const outcomes = Promise.all([
      sends.send(message(convo.id, alice)),
      sends.send(message(convo.id, alice), claimOf(alice, "late")),
    ]);
    // The batch's insert of the key waits for the open transaction, which then commits: 23505.
    await statementWaits(db, SEND_BATCH_SQL);
    holder.release();
    await holder.done;
    const [plain, keyed] = await outcomes;
    expect(seqOf(plain)).toBe(1);
    expect(keyed).toEqual({ stored: { requestHash: "a".repeat(64), statusCode: 200, response: '{"seq":0}' } });
    expect(sizes).toEqual([2]);
  });
});
