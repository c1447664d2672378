/**
 * Battle tests 1, 2, 3, 5, 7 and 10: exactly-once and ordering under concurrency, against two real server
 * processes on one real PostgreSQL database, checked in the database itself. Set-up and ordinary calls go through
 * the typed client; the racing identical requests of 1, 2, 5 and 10 are raw (./client.ts): each one's own status
 * and replay flag is what they check, and 2 and 5 send no idempotency key at all.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { UniqueViolationError } from "../../src/db/driver.js";
import { outcome } from "../helpers/client.js";
import { testDatabase } from "../helpers/context.js";
import { battleClient, utf8 } from "./calls.js";
import { base64, BattleClient, type Reply } from "./client.js";
import { createConvo, enterBattle, scalar } from "./fixtures.js";
import { battleReport, guarantee } from "./report.js";
import { start, stopAll, type BattleServer } from "./server.js";

const db = testDatabase(4);
// Repeats wait for the first request as long as it takes here: a 409 would be a slow machine, not a bug.
const SERVER_ENV = { IDEMPOTENCY_WAIT_MS: "30000" };
let serverA: BattleServer | undefined;
let serverB: BattleServer | undefined;
let a: BattleClient;
let b: BattleClient;

beforeAll(async () => {
  const [first, second] = await Promise.allSettled([start(SERVER_ENV), start(SERVER_ENV)]);
  serverA = first.status === "fulfilled" ? first.value : undefined;
  serverB = second.status === "fulfilled" ? second.value : undefined;
  if (first.status === "rejected") throw first.reason;
  if (second.status === "rejected") throw second.reason;
  a = new BattleClient(serverA!.url);
  b = new BattleClient(serverB!.url);
});

afterAll(async () => {
  await stopAll([serverA, serverB]);
  await db.close();
});

const times = <T>(n: number, make: (i: number) => T): T[] => Array.from({ length: n }, (_, i) => make(i));
const statuses = (replies: { status: number }[]) => [...new Set(replies.map((reply) => reply.status))].join(", ");

describe("battle: concurrency against real server processes", () => {
  it("1. idempotency stress: 100 concurrent identical sendMessage requests with one key", async () => {
    const report = battleReport("Idempotency Stress (100x Concurrent Identical Requests)");
    const battle = await enterBattle(db, "idem");
    const alice = battle.did("alice");
    const convo = await createConvo(serverA!.url, battle, alice);
    report.log(`created conversation ${convo.name} (${convo.id})`);

    const key = `${battle.prefix}-key`;
    const body = { convoId: convo.id, ciphertext: base64(`${battle.prefix} hello`), epoch: 0 };
    const pending = times(100, () => a.post(alice, "sendMessage", body, { idempotencyKey: key }));
    report.log(`launched ${pending.length} concurrent requests`);
    const replies = await Promise.all(pending);

    const messages = await scalar(db, `SELECT count(*) AS n FROM messages WHERE convo_id = $1`, [convo.id]);
    const entries = await scalar(db, `SELECT count(*) AS n FROM idempotency_keys WHERE caller_did = $1 AND key = $2`, [
      alice,
      key,
    ]);
    const inserts = await scalar(db, `SELECT count(*) AS n FROM events WHERE convo_id = $1 AND kind = 'message'`, [
      convo.id,
    ]);
    const originals = replies.filter((reply) => !reply.replayed);
    report.log(
      `results: replayed ${replies.length - originals.length}, original ${originals.length}, ` +
        `messages in db ${messages}, idempotency entries ${entries}`,
    );
    expect(statuses(replies), guarantee("every repeat gets the stored answer (200)")).toBe("200");
    expect(messages, guarantee("exactly 1 message in the database")).toBe(1);
    expect(entries, guarantee("exactly 1 idempotency entry")).toBe(1);
    expect(originals.length, guarantee("at most 1 request actually runs (the rest are replays)")).toBe(1);
    expect(inserts, guarantee("at most 1 actual insert (one message event)")).toBe(1);
    expect(
      new Set(replies.map((reply) => reply.body.messageId)).size,
      guarantee("every response carries the same messageId"),
    ).toBe(1);
    report.pass("exactly-once under 100 concurrent identical requests");
  });

  it("2. concurrent member addition: 50 concurrent addMembers adding the same 10 members", async () => {
    const report = battleReport("Concurrent Member Addition (50x addMembers, Same 10 Members)");
    const battle = await enterBattle(db, "members");
    const alice = battle.did("alice");
    const convo = await createConvo(serverA!.url, battle, alice);
    report.log(`created conversation ${convo.name} (${convo.id})`);

    const didList = times(10, (i) => battle.did(`member${i}`));
    const replies = await Promise.all(times(50, () => a.post(alice, "addMembers", { convoId: convo.id, didList })));
    report.log("launched 50 concurrent addMembers with the same 10 DIDs");

    const [rows] = await db.query<{ total: number; active: number; distinct_dids: number }>(
      `SELECT count(*) AS total, count(*) FILTER (WHERE left_at IS NULL) AS active, count(DISTINCT did) AS distinct_dids
         FROM members WHERE convo_id = $1`,
      [convo.id],
    );
    const [joins] = await db.query<{ total: number; distinct_dids: number }>(
      `SELECT count(*) AS total, count(DISTINCT payload->>'did') AS distinct_dids FROM events
        WHERE convo_id = $1 AND kind = 'membership' AND payload->>'type' = 'joined' AND payload->>'did' <> $2`,
      [convo.id, alice],
    );
    report.log(
      `results: ${replies.filter((r) => r.status === 200).length}/50 succeeded, member rows ${rows?.total}, ` +
        `active ${rows?.active}, join events ${joins?.total}`,
    );
    expect(statuses(replies), guarantee("adding an active member again is no error (every request 200)")).toBe("200");
    expect(rows?.active, guarantee("exactly 11 active members (creator + 10)")).toBe(11);
    expect(rows?.total, guarantee("no duplicate member rows")).toBe(rows?.distinct_dids);
    expect(rows?.total, guarantee("no member rows beyond the 11")).toBe(11);
    expect(joins, guarantee("each member joined once (10 join events)")).toEqual({ total: 10, distinct_dids: 10 });
    report.pass("11 active members, no duplicates, under 50 concurrent identical additions");
  });

  it("3. message ordering: 200 messages from 5 concurrent senders", async () => {
    const report = battleReport("Message Ordering Under High Concurrency (200 Messages, 5 Senders)");
    const battle = await enterBattle(db, "order");
    const senders = times(5, (i) => battle.did(`sender${i}`));
    const convo = await createConvo(serverA!.url, battle, senders[0]!, { initialMembers: senders.slice(1) });
    report.log(`created conversation ${convo.name} (${convo.id}) with 5 members`);

    const expected = senders.flatMap((sender) => times(40, (i) => `${sender}#${i}`));
    const clients = new Map(senders.map((sender) => [sender, battleClient(serverA!.url, sender)]));
    const replies = await Promise.all(
      expected.map((text) => {
        const sender = text.split("#")[0]!;
        const input = { convoId: convo.id, ciphertext: utf8(text), epoch: 0 };
        return outcome(clients.get(sender)!.sendMessage(input, { idempotencyKey: `${battle.prefix}-${text}` }));
      }),
    );
    report.log(`launched ${replies.length} concurrent sends, 40 per sender`);

    const rows = await db.query<{ id: string; seq: number; sender_did: string; ciphertext: Uint8Array }>(
      `SELECT id, seq, sender_did, ciphertext FROM messages WHERE convo_id = $1 ORDER BY seq`,
      [convo.id],
    );
    const wentBack = await scalar(
      db,
      `SELECT count(*) FILTER (WHERE created_at < previous) AS n
         FROM (SELECT created_at, lag(created_at) OVER (ORDER BY seq) AS previous FROM messages WHERE convo_id = $1) ordered`,
      [convo.id],
    );
    const stored = rows.map((row) => Buffer.from(row.ciphertext).toString());
    const seqs = rows.map((row) => row.seq);
    report.log(
      `results: stored ${rows.length}, seq ${seqs[0]}..${seqs.at(-1)}, createdAt steps back ${wentBack} times`,
    );
    expect(statuses(replies), guarantee("every send succeeds")).toBe("200");
    expect(rows.length, guarantee("all 200 messages stored")).toBe(200);
    expect(seqs, guarantee("seq is exactly 1..200, no gap, no duplicate")).toEqual(times(200, (i) => i + 1));
    expect(wentBack, guarantee("createdAt never decreases as seq grows")).toBe(0);
    expect([...stored].sort(), guarantee("no message lost or duplicated")).toEqual([...expected].sort());
    expect(
      rows.every((row, i) => stored[i]!.startsWith(`${row.sender_did}#`)),
      guarantee("each message is stored under its sender"),
    ).toBe(true);
    const answered = new Map(replies.map((reply) => [reply.data?.seq, reply.data?.messageId]));
    expect(
      rows.every((row) => answered.get(row.seq) === row.id),
      guarantee("each sender was told the seq and id its message has"),
    ).toBe(true);
    report.pass("200 messages, seq 1..200 gapless, createdAt in seq order");
  });

  it("5. leave natural idempotency: 50 concurrent leaveConvo by the same member", async () => {
    const report = battleReport("Leave Conversation Natural Idempotency (50x Concurrent leaveConvo)");
    const battle = await enterBattle(db, "leave");
    const [alice, bob] = [battle.did("alice"), battle.did("bob")];
    const convo = await createConvo(serverA!.url, battle, alice, { initialMembers: [bob] });
    report.log(`created conversation ${convo.name} (${convo.id}) with bob`);

    const replies = await Promise.all(times(50, () => a.post(bob, "leaveConvo", { convoId: convo.id })));
    report.log("launched 50 concurrent leaveConvo by bob");

    const [member] = await db.query<{ left_at: Date | null }>(
      `SELECT left_at FROM members WHERE convo_id = $1 AND did = $2`,
      [convo.id, bob],
    );
    const leaves = await scalar(
      db,
      `SELECT count(*) AS n FROM events WHERE convo_id = $1 AND kind = 'membership' AND payload->>'type' = 'left'`,
      [convo.id],
    );
    const active = await scalar(db, `SELECT count(*) AS n FROM members WHERE convo_id = $1 AND left_at IS NULL`, [
      convo.id,
    ]);
    const successes = replies.filter((reply) => reply.status === 200 && reply.body.success === true).length;
    report.log(
      `results: successes ${successes}/50, leaves that took effect ${leaves}, left_at set ${member?.left_at != null}`,
    );
    expect(successes, guarantee("every leave answers success")).toBe(50);
    expect(leaves, guarantee("exactly 1 leave took effect")).toBe(1);
    expect(member?.left_at, guarantee("left_at is set")).toBeInstanceOf(Date);
    expect(active, guarantee("only the creator is still active")).toBe(1);
    report.pass("leaving 50 times at once leaves once, and every caller hears success");
  });

  it("7. database constraints: a second record for the same caller, method and idempotency key is refused", async () => {
    const report = battleReport("Database Constraints (Duplicate Idempotency Key, Straight to SQL)");
    const battle = await enterBattle(db, "constraint");
    const alice = battle.did("alice");
    // The record is what makes a key's action happen once: it commits with the action, and its key refuses a second claim.
    const insert = (hash: string) =>
      db.query(
        `INSERT INTO idempotency_keys (caller_did, method, key, request_hash, status_code, response, created_at, expires_at)
         VALUES ($1, 'blue.catbird.mls.sendMessage', $2, $3, 200, '{}', now(), now() + interval '1 day')`,
        [alice, `${battle.prefix}-key`, hash],
      );
    await insert("ab".repeat(32));
    report.log("inserted the record of the key");
    const second = await insert("cd".repeat(32)).then(
      () => undefined,
      (error: unknown) => error,
    );
    report.log(
      `second record with the same key: ${second instanceof Error ? `${second.name} (${(second as UniqueViolationError).constraint})` : "accepted"}`,
    );
    const stored = await scalar(db, `SELECT count(*) AS n FROM idempotency_keys WHERE caller_did = $1`, [alice]);
    report.log(`records in db ${stored}`);
    expect(
      second,
      guarantee("the database refuses a second record with the same (caller, method, idempotency key)"),
    ).toBeInstanceOf(UniqueViolationError);
    expect((second as UniqueViolationError).constraint).toBe("idempotency_keys_pkey");
    expect(stored, guarantee("exactly 1 record exists")).toBe(1);
    report.pass("the schema itself keeps one record, so one action, per (caller, method, idempotency key)");
  });

  it("10. two server processes on one database: 100 identical requests split between them", async () => {
    const report = battleReport("Two Server Processes, One Database (100 Identical Requests Split 50/50)");
    const battle = await enterBattle(db, "twoserver");
    const alice = battle.did("alice");
    const convo = await createConvo(serverA!.url, battle, alice);
    report.log(`created conversation ${convo.name} (${convo.id}); servers pid ${serverA!.pid} and pid ${serverB!.pid}`);

    const key = `${battle.prefix}-key`;
    const body = { convoId: convo.id, ciphertext: base64(`${battle.prefix} hello`), epoch: 0 };
    const replies = await Promise.all(
      times(100, (i) => (i % 2 === 0 ? a : b).post(alice, "sendMessage", body, { idempotencyKey: key })),
    );
    report.log("launched 100 concurrent requests, alternating between the two servers");

    const messages = await scalar(db, `SELECT count(*) AS n FROM messages WHERE convo_id = $1`, [convo.id]);
    const entries = await scalar(db, `SELECT count(*) AS n FROM idempotency_keys WHERE caller_did = $1 AND key = $2`, [
      alice,
      key,
    ]);
    const originals = replies.filter((reply) => !reply.replayed).length;
    report.log(
      `results: replayed ${100 - originals}, original ${originals}, messages in db ${messages}, idempotency entries ${entries}`,
    );
    expect(statuses(replies), guarantee("every request on either server gets 200")).toBe("200");
    expect(messages, guarantee("exactly 1 message across both servers")).toBe(1);
    expect(entries, guarantee("exactly 1 idempotency entry")).toBe(1);
    expect(originals, guarantee("exactly 1 request actually runs")).toBe(1);
    expect(
      new Set(replies.map((reply) => reply.body.messageId)).size,
      guarantee("both servers answer the same messageId"),
    ).toBe(1);
    report.pass("exactly one effect across two server processes sharing the database");
  });
});
