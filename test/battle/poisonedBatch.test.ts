/**
 * Battle: group commit with poisoned sends. A real server process stores concurrent sendMessage
 * requests many to a statement; among good sends to three conversations come a sender who is no
 * member, an epoch ahead of the conversation's, and a key another transaction holds (as a request
 * on another instance would, between its claim and its commit). The good ones are all answered and
 * stored while the key is still held, with gapless seqs; the poisoned ones get their own answers and
 * store nothing, and the held key's send is stored once after its holder let go. Checked over HTTP
 * and in the database. Every send goes through the typed client, one attempt each.
 */
import type { Output } from "mls-delivery-service/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ADVISORY_LOCK } from "../../src/db/advisoryLocks.js";
import { keyLockId } from "../../src/services/idempotencyKeys.js";
import { outcome, type Outcome } from "../helpers/client.js";
import { testDatabase } from "../helpers/context.js";
import { battleClient, utf8 } from "./calls.js";
import { createConvo, enterBattle, scalar } from "./fixtures.js";
import { battleReport, guarantee } from "./report.js";
import { start, stopAll, type BattleServer } from "./server.js";

const db = testDatabase(4);
let server: BattleServer | undefined;
const SEND_METHOD = "blue.catbird.mls.sendMessage";

beforeAll(async () => {
  server = await start({ IDEMPOTENCY_WAIT_MS: "30000" });
});

afterAll(async () => {
  await stopAll([server]);
  await db.close();
});

/** Batches stored so far and the sends they held, from the server's `send_batch_items` histogram. */
async function batchTotals(): Promise<{ batches: number; sends: number }> {
  const text = await (await fetch(`${server!.url}/metrics`)).text();
  const value = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1] ?? 0);
  return { batches: value("send_batch_items_count"), sends: value("send_batch_items_sum") };
}

/** Runs `sql` in a transaction that holds what it took until `release()`, then rolls back. */
function holdKey(sql: string, params: unknown[]) {
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  let locked!: () => void;
  const held = new Promise<void>((resolve) => (locked = resolve));
  const rolledBack = new Error("rolled back");
  const done = db
    .transaction(async (tx) => {
      await tx.query(sql, params);
      locked();
      await released;
      throw rolledBack;
    })
    .catch((error: unknown) => {
      if (error !== rolledBack) throw error;
    });
  return { held, release, done };
}

describe("battle: a batch of sends with poisoned items among good ones", () => {
  it("good sends are stored and answered; each poisoned one fails (or waits) alone", async () => {
    const report = battleReport("Group Commit With Poisoned Items");
    const battle = await enterBattle(db, "poison");
    const [alice, bob, mallory] = ["alice", "bob", "mallory"].map((name) => battle.did(name)) as [
      string,
      string,
      string,
    ];
    const convos = [];
    for (let i = 0; i < 3; i++) convos.push(await createConvo(server!.url, battle, alice, { initialMembers: [bob] }));
    const [first] = convos;

    // Another transaction holds one of Alice's keys, its lock and its uncommitted record, as a claim
    // does, and then rolls back (its request failed).
    const heldKey = `${battle.prefix}-held`;
    const holder = holdKey(
      `WITH locked AS (SELECT pg_advisory_xact_lock($1, ${keyLockId("$2", "$3", "$4")}))
       INSERT INTO idempotency_keys (caller_did, method, key, request_hash, created_at, expires_at)
       SELECT $2, $3, $4, repeat('0', 64), now(), now() + interval '1 day' FROM locked RETURNING key`,
      [ADVISORY_LOCK.idempotencyKey, alice, SEND_METHOD, heldKey],
    );
    await holder.held;
    const before = await batchTotals();

    const good: { convo: string; key: string; reply: Promise<Outcome<Output<"sendMessage">>> }[] = [];
    const clients = new Map([alice, bob, mallory].map((did) => [did, battleClient(server!.url, did)]));
    const send = (sender: string, convo: string, epoch: number, key: string) =>
      outcome(
        clients.get(sender)!.sendMessage({ convoId: convo, ciphertext: utf8(key), epoch }, { idempotencyKey: key }),
      );
    for (let i = 0; i < 150; i++) {
      const convo = convos[i % 3]!.id;
      const key = `${battle.prefix}-good-${i}`;
      good.push({ convo, key, reply: send(i % 2 ? alice : bob, convo, 0, key) });
    }
    const notMember = send(mallory, first!.id, 0, `${battle.prefix}-mallory`);
    const aheadOfEpoch = send(alice, first!.id, 5, `${battle.prefix}-ahead`);
    let heldAnswered = false;
    const held = send(alice, first!.id, 0, heldKey).then((reply) => ((heldAnswered = true), reply));
    for (let i = 150; i < 300; i++) {
      const convo = convos[i % 3]!.id;
      const key = `${battle.prefix}-good-${i}`;
      good.push({ convo, key, reply: send(i % 2 ? alice : bob, convo, 0, key) });
    }

    const goodReplies = await Promise.all(good.map((item) => item.reply));
    const [mallorys, ahead] = await Promise.all([notMember, aheadOfEpoch]);
    const heldWhileAnswered = !heldAnswered;
    const after = await batchTotals();
    report.log(
      `${after.sends - before.sends} sends in ${after.batches - before.batches} batches; ` +
        `not a member: ${mallorys.status}, epoch ahead: ${ahead.status}`,
    );
    expect(
      [...new Set(goodReplies.map((reply) => reply.status))],
      guarantee("every good send is answered 200"),
    ).toEqual([200]);
    expect(heldWhileAnswered, guarantee("the good sends did not wait for the held key")).toBe(true);
    expect([mallorys.status, mallorys.error], guarantee("a non-member's send fails alone")).toEqual([403, "NotMember"]);
    expect([ahead.status, ahead.error], guarantee("a send for a future epoch fails alone")).toEqual([
      409,
      "EpochMismatch",
    ]);
    expect(
      after.sends - before.sends > after.batches - before.batches,
      guarantee("sends were stored many to a batch"),
    ).toBe(true);

    // The holder rolls back: the held key's send goes on and is stored once.
    holder.release();
    await holder.done;
    const heldReply = await held;
    expect(heldReply.status, guarantee("the held key's send is stored once its holder let go")).toBe(200);

    for (const convo of convos) {
      const [row] = await db.query<{ n: number; min: number; max: number }>(
        `SELECT count(*)::int AS n, min(seq)::int AS min, max(seq)::int AS max FROM messages WHERE convo_id = $1`,
        [convo.id],
      );
      const expected = good.filter((item) => item.convo === convo.id).length + (convo === first ? 1 : 0);
      expect(row, guarantee(`conversation ${convo.id}: every send stored once, seqs 1..n without gaps`)).toEqual({
        n: expected,
        min: 1,
        max: expected,
      });
    }
    const seqs = goodReplies.map((reply, i) => `${good[i]!.convo} ${reply.data?.seq}`);
    expect(new Set(seqs).size, guarantee("no two answers share a (conversation, seq)")).toBe(seqs.length);
    const keyed = await scalar(
      db,
      `SELECT count(DISTINCT idempotency_key) AS n FROM messages WHERE convo_id = ANY($1) AND idempotency_key IS NOT NULL`,
      [convos.map((convo) => convo.id)],
    );
    expect(keyed, guarantee("one message per key")).toBe(good.length + 1);
    expect(
      await scalar(
        db,
        `SELECT count(*) AS n FROM messages WHERE convo_id = ANY($1) AND (sender_did = $2 OR epoch = 5)`,
        [convos.map((convo) => convo.id), mallory],
      ),
      guarantee("nothing of the poisoned sends was stored"),
    ).toBe(0);
    report.pass("group commit keeps every send's own checks and outcome");
  });
});
