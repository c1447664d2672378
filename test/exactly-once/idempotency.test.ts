import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ManualClock } from "../../src/clock.js";
import { DatabaseUnavailableError, type Database } from "../../src/db/driver.js";
import { claimKey } from "../../src/services/idempotencyKeys.js";
import { testApp, testDatabase, tokenFor, unique } from "../helpers/context.js";
import { withStatementHook } from "../helpers/faults.js";
import { migratedPglite } from "../helpers/pglite.js";
import { clientFor, outcome } from "../helpers/client.js";
import { xrpc } from "../helpers/xrpc.js";
import { AQID, BAUG, cleanupAt, keyedSend as send, messageCount, soloConversation } from "./fixtures.js";

type App = ReturnType<typeof testApp>["app"];

const drivers: { name: string; open: () => Promise<Database> }[] = [
  { name: "postgres.js on real PostgreSQL", open: async () => testDatabase(10) },
  { name: "PGlite", open: migratedPglite },
];

describe.each(drivers)("idempotency keys ($name)", ({ open }) => {
  let db: Database;
  beforeAll(async () => {
    db = await open();
  });
  afterAll(() => db.close());

  const conversation = (app: App) => soloConversation(app, "did:plc:idem");

  async function countRows(convoId: string, caller: string) {
    const [row] = await db.query<{ messages: number; entries: number }>(
      `SELECT (SELECT count(*) FROM messages WHERE convo_id = $1) AS messages,
              (SELECT count(*) FROM idempotency_keys WHERE caller_did = $2 AND method = 'blue.catbird.mls.sendMessage') AS entries`,
      [convoId, caller],
    );
    return row!;
  }

  it("100 concurrent identical sendMessage requests with one key: one message, one entry, 99 replays", async () => {
    const { app } = testApp(db);
    const { alice, convoId } = await conversation(app);
    const responses = await Promise.all(Array.from({ length: 100 }, () => send(app, alice, convoId, "stress-key")));
    expect(responses.map((r) => r.status)).toEqual(Array(100).fill(200));
    expect(new Set(responses.map((r) => r.data?.messageId)).size).toBe(1);
    expect(responses.filter((r) => r.data && r.replayed)).toHaveLength(99);
    expect(await countRows(convoId, alice)).toEqual({ messages: 1, entries: 1 });
  });

  it("10 keys x 20 interleaved requests: 10 messages, one answer per key", async () => {
    const { app } = testApp(db);
    const { alice, convoId } = await conversation(app);
    const keys = Array.from({ length: 10 }, (_, i) => `key-${i}`);
    const requests = Array.from({ length: 200 }, (_, i) => keys[i % 10]!);
    const responses = await Promise.all(requests.map((key) => send(app, alice, convoId, key)));
    expect(responses.every((r) => r.status === 200)).toBe(true);
    for (const key of keys) {
      const ids = new Set(responses.filter((_, i) => requests[i] === key).map((r) => r.data?.messageId));
      expect(ids.size).toBe(1);
    }
    expect(new Set(responses.map((r) => r.data?.messageId)).size).toBe(10);
    expect(await countRows(convoId, alice)).toEqual({ messages: 10, entries: 10 });
  });

  it("the same key with a different body is 422 and stores nothing more", async () => {
    const { app } = testApp(db);
    const { alice, convoId } = await conversation(app);
    expect((await send(app, alice, convoId, "k", AQID)).status).toBe(200);
    // Raw: the test asserts the error body is exactly {error, message}, which the client does not show. The bytes
    // in the client's form ({"$bytes"}): only their value differs from the first send.
    const reused = await xrpc(app, alice, "sendMessage", {
      body: { convoId, ciphertext: { $bytes: "BAUG" }, epoch: 0 },
      headers: { "Idempotency-Key": "k" },
    });
    expect(reused.status).toBe(422);
    expect(reused.body).toEqual({ error: "IdempotencyKeyReused", message: expect.any(String) });
    expect(await countRows(convoId, alice)).toEqual({ messages: 1, entries: 1 });
  });

  it("the stored answer is the very text the first request got, and the repeat gets it byte for byte", async () => {
    const { app } = testApp(db);
    const { alice, convoId } = await conversation(app);
    const request = () =>
      app.request("/xrpc/blue.catbird.mls.sendMessage", {
        method: "POST",
        headers: { "Content-Type": "application/json", "Idempotency-Key": "exact" },
        body: JSON.stringify({ convoId, ciphertext: "AQID", epoch: 0 }),
      });
    const authed = async () => {
      const token = await tokenFor(alice);
      return app.request("/xrpc/blue.catbird.mls.sendMessage", {
        method: "POST",
        headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json", "Idempotency-Key": "exact" },
        body: JSON.stringify({ convoId, ciphertext: "AQID", epoch: 0 }),
      });
    };
    expect((await request()).status).toBe(401);
    const first = await authed();
    const firstText = await first.text();
    expect(first.status).toBe(200);
    expect(JSON.parse(firstText)).toEqual({
      messageId: expect.any(String),
      seq: 1,
      epoch: 0,
      receivedAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
    });
    const [stored] = await db.query<{ response: string; status_code: number }>(
      `SELECT response, status_code FROM idempotency_keys WHERE caller_did = $1 AND key = 'exact'`,
      [alice],
    );
    expect(stored).toEqual({ response: firstText, status_code: 200 });
    // Raw requests above and below: the stored and replayed answers are compared as text, byte for byte.
    const repeat = await authed();
    expect(repeat.headers.get("Idempotent-Replayed")).toBe("true");
    expect(await repeat.text()).toBe(firstText);
  });

  it("a repeat answered from memory keeps the connection; other bytes with the key are still compared canonically", async () => {
    const { app } = testApp(db);
    const { alice, convoId } = await conversation(app);
    const token = await tokenFor(alice);
    // Raw: the exact bytes sent are the point.
    const post = (body: string) =>
      app.request("/xrpc/blue.catbird.mls.sendMessage", {
        method: "POST",
        headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json", "Idempotency-Key": "bytes" },
        body,
      });
    const first = await post(JSON.stringify({ convoId, ciphertext: "AQID", epoch: 0 }));
    const firstText = await first.text();
    expect(first.status).toBe(200);
    const same = await post(JSON.stringify({ convoId, ciphertext: "AQID", epoch: 0 }));
    expect(same.headers.get("Idempotent-Replayed")).toBe("true");
    // A body nobody read closes the connection (limitBody); a replay's body was read.
    expect(same.headers.get("Connection")).toBeNull();
    expect(await same.text()).toBe(firstText);
    const reordered = await post(JSON.stringify({ epoch: 0, ciphertext: "AQID", convoId }));
    expect(reordered.headers.get("Idempotent-Replayed")).toBe("true");
    expect(await reordered.text()).toBe(firstText);
    const spaced = await post(JSON.stringify({ convoId, ciphertext: "AQID", epoch: 0 }, null, 2));
    expect(await spaced.text()).toBe(firstText);
    const other = await post(JSON.stringify({ convoId, ciphertext: "BAUG", epoch: 0 }));
    expect(other.status).toBe(422);
    expect(await countRows(convoId, alice)).toEqual({ messages: 1, entries: 1 });
  });

  it("a 4xx answer is stored with the key and replayed, even after the cause went away", async () => {
    const { app } = testApp(db);
    const { alice, convoId } = await conversation(app);
    const bob = unique("did:plc:idemlate");
    const early = await send(app, bob, convoId, "too-early");
    expect(early.status).toBe(403);
    expect(early.error).toBe("NotMember");
    expect((await clientFor(app, alice).addMembers({ convoId, didList: [bob] })).status).toBe(200);
    // Raw: a replayed error answer carries Idempotent-Replayed, which the client reports only on a success. The
    // body as the client sent it (bytes as {"$bytes"}), so it is the same request.
    const repeat = await xrpc(app, bob, "sendMessage", {
      body: { convoId, ciphertext: { $bytes: "AQID" }, epoch: 0 },
      headers: { "Idempotency-Key": "too-early" },
    });
    expect(repeat.status).toBe(403);
    expect(repeat.headers.get("Idempotent-Replayed")).toBe("true");
    expect(repeat.body).toEqual({ error: early.error, message: early.error && early.message });
    const fresh = await send(app, bob, convoId, "after-joining");
    expect(fresh.status).toBe(200);
  });

  it("the body's idempotencyKey is the same key as the header's; key order does not change the fingerprint", async () => {
    const { app } = testApp(db);
    const { alice, convoId } = await conversation(app);
    // Raw: the client always sends the key as a header too, and its own key order; here the key is only in the
    // body first, then only in the header with the JSON fields in another order.
    const first = await xrpc(app, alice, "sendMessage", {
      body: { convoId, ciphertext: "AQID", epoch: 0, idempotencyKey: "body-key" },
    });
    const again = await xrpc(app, alice, "sendMessage", {
      body: JSON.stringify({ epoch: 0, ciphertext: "AQID", convoId }),
      headers: { "Idempotency-Key": "body-key" },
    });
    expect(again.status).toBe(200);
    expect(again.headers.get("Idempotent-Replayed")).toBe("true");
    expect(again.body).toEqual(first.body);
  });

  it("a key is scoped to caller and method", async () => {
    const { app } = testApp(db);
    const { alice, convoId } = await conversation(app);
    const bob = unique("did:plc:idembob");
    expect((await clientFor(app, alice).addMembers({ convoId, didList: [bob] })).status).toBe(200);
    const fromAlice = await send(app, alice, convoId, "shared");
    const fromBob = await send(app, bob, convoId, "shared");
    expect(fromBob.status).toBe(200);
    expect(fromBob.data && fromBob.replayed).toBe(false);
    expect(fromBob.data?.messageId).not.toBe(fromAlice.data?.messageId);
    const otherMethod = await clientFor(app, alice).updateCursor(
      { convoId, cursor: "1" },
      { idempotencyKey: "shared" },
    );
    expect(otherMethod.status).toBe(200);
    expect(otherMethod.data && otherMethod.replayed).toBe(false);
  });

  it("rejects a malformed key and a header that disagrees with the body", async () => {
    const { app } = testApp(db);
    const { alice, convoId } = await conversation(app);
    // Raw: malformed keys, and a header that disagrees with the body (the client never sends either).
    for (const key of ["", "x".repeat(256), "tab\there", "é"]) {
      const response = await xrpc(app, alice, "sendMessage", {
        body: { convoId, ciphertext: "AQID", epoch: 0, idempotencyKey: key },
      });
      expect(response.status).toBe(400);
    }
    const mismatch = await xrpc(app, alice, "sendMessage", {
      body: { convoId, ciphertext: "AQID", epoch: 0, idempotencyKey: "a" },
      headers: { "Idempotency-Key": "b" },
    });
    expect(mismatch.status).toBe(400);
    expect(await countRows(convoId, alice)).toEqual({ messages: 0, entries: 0 });
  });

  it("a 5xx answer is not stored: the retry runs again and succeeds once", async () => {
    let failNext = true;
    const faulty = withStatementHook(db, async (sql) => {
      if (failNext && sql.includes("INSERT INTO messages")) {
        failNext = false;
        throw new DatabaseUnavailableError("injected connection loss");
      }
    });
    const { app } = testApp(faulty);
    const { alice, convoId } = await conversation(app);
    const failed = await send(app, alice, convoId, "retry-me");
    expect(failed.status).toBe(503);
    expect(failed.error).toBe("NotReady");
    expect(await countRows(convoId, alice)).toEqual({ messages: 0, entries: 0 });
    const retried = await send(app, alice, convoId, "retry-me");
    expect(retried.status).toBe(200);
    expect(retried.data && retried.replayed).toBe(false);
    expect(await countRows(convoId, alice)).toEqual({ messages: 1, entries: 1 });
  });

  it("an expired entry is ignored by a new request and removed by cleanup; live entries stay", async () => {
    const clock = new ManualClock();
    const { app } = testApp(db, { IDEMPOTENCY_TTL_SECONDS: "60" }, clock);
    const { alice, convoId } = await conversation(app);
    expect((await send(app, alice, convoId, "old", AQID)).status).toBe(200);
    clock.advance(61_000);
    const after = await send(app, alice, convoId, "old", BAUG);
    expect(after.status).toBe(200);
    expect(after.data && after.replayed).toBe(false);
    expect((await send(app, alice, convoId, "expiring", AQID)).status).toBe(200);
    clock.advance(61_000);
    expect((await send(app, alice, convoId, "live", AQID)).status).toBe(200);

    const result = await cleanupAt(db, clock.now());
    expect(result.ran && result.idempotencyKeys).toBeGreaterThanOrEqual(2);
    const left = await db.query<{ key: string }>(
      `SELECT key FROM idempotency_keys WHERE caller_did = $1 ORDER BY key`,
      [alice],
    );
    expect(left.map((row) => row.key)).toEqual(["live"]);
  });
});

describe("idempotency wait limit (real PostgreSQL)", () => {
  const db = testDatabase(10);
  afterAll(() => db.close());

  it("a repeat that waits longer than IDEMPOTENCY_WAIT_MS gets 409 IdempotencyKeyInUse with Retry-After", async () => {
    // addMembers has no one-statement path: its handler runs inside the transaction holding the key
    let stalling!: () => void;
    const isStalling = new Promise<void>((resolve) => (stalling = resolve));
    const stalled = withStatementHook(db, async (sql) => {
      if (!sql.includes("INSERT INTO members")) return;
      stalling();
      await new Promise((resolve) => setTimeout(resolve, 2000));
    });
    const { app } = testApp(stalled, { IDEMPOTENCY_WAIT_MS: "200" });
    const { app: plain } = testApp(db);
    const { alice, convoId } = await soloConversation(plain, "did:plc:idemwait");
    const input = { convoId, didList: [unique("did:plc:idemwaitbob")] };
    const addMembers = () => outcome(clientFor(app, alice).addMembers(input, { idempotencyKey: "slow" }));
    const first = addMembers();
    await isStalling; // the first request holds the key
    const repeat = await addMembers();
    expect(repeat.status).toBe(409);
    expect(repeat.error).toBe("IdempotencyKeyInUse");
    expect(repeat.error && repeat.retryAfter).toBeGreaterThanOrEqual(1);
    expect((await first).status).toBe(200);
    const replay = await addMembers();
    expect(replay.data && replay.replayed).toBe(true);
  });

  it("a keyed send whose key another transaction holds waits IDEMPOTENCY_WAIT_MS, then gets 409 and writes nothing", async () => {
    const { app } = testApp(db, { IDEMPOTENCY_WAIT_MS: "200" });
    const { alice, convoId } = await soloConversation(app, "did:plc:idemheld");
    const scope = [alice, "blue.catbird.mls.sendMessage", "held"] as const;
    let release!: () => void;
    let claimed!: () => void;
    const isClaimed = new Promise<void>((resolve) => (claimed = resolve));
    const holder = db
      .transaction(async (tx) => {
        await claimKey(tx, {
          scope,
          requestHash: "ab".repeat(32),
          now: new Date(),
          expiresAt: new Date(Date.now() + 60_000),
          waitMs: 1000,
        });
        claimed();
        await new Promise<void>((resolve) => (release = resolve));
        throw new Error("roll the claim back");
      })
      .catch((error: Error) => expect(error.message).toBe("roll the claim back"));
    await isClaimed;
    const blocked = await send(app, alice, convoId, "held");
    expect(blocked.status).toBe(409);
    expect(blocked.error).toBe("IdempotencyKeyInUse");
    expect(blocked.error && blocked.retryAfter).toBeGreaterThanOrEqual(1);
    release();
    await holder;
    const sent = await send(app, alice, convoId, "held");
    expect(sent.status).toBe(200);
    expect(sent.data && sent.replayed).toBe(false);
    expect(await messageCount(db, convoId)).toBe(1);
  });

  it("a keyed send that waits on the conversation longer than IDEMPOTENCY_WAIT_MS still sends once", async () => {
    const { app } = testApp(db, { IDEMPOTENCY_WAIT_MS: "200" });
    const { alice, convoId } = await soloConversation(app, "did:plc:idemlocked");
    let release!: () => void;
    let locked!: () => void;
    const isLocked = new Promise<void>((resolve) => (locked = resolve));
    const holder = db.transaction(async (tx) => {
      await tx.query(`SELECT 1 FROM conversations WHERE id = $1 FOR UPDATE`, [convoId]);
      locked();
      await new Promise<void>((resolve) => (release = resolve));
    });
    await isLocked;
    const sending = send(app, alice, convoId, "waits");
    await new Promise((resolve) => setTimeout(resolve, 800));
    release();
    await holder;
    const sent = await sending;
    expect(sent.status).toBe(200);
    const replay = await send(app, alice, convoId, "waits");
    expect(replay.data && replay.replayed).toBe(true);
    expect(replay.data).toEqual(sent.data);
    expect(await messageCount(db, convoId)).toBe(1);
  });
});
