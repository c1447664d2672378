/**
 * A key's effect lives exactly as long as its entry (rule 6): once the entry has expired, the same
 * key is a new action that stores a new message and answers with it, never with an earlier one.
 */
import { afterAll, describe, expect, it } from "vitest";
import { ManualClock } from "../../src/clock.js";
import { testApp, testDatabase, tokenFor, unique } from "../helpers/context.js";
import { conversationLockWaiters, holdConversationRow } from "../helpers/rowLock.js";
import { clientFor } from "../helpers/client.js";
import {
  AQID,
  BAUG,
  cleanupAt,
  keyedSend as send,
  messageCount,
  newConversation,
  soloConversation,
} from "./fixtures.js";

const TTL_MS = 86_400_000;

describe("an expired idempotency key is a new action (real PostgreSQL)", () => {
  const db = testDatabase(10);
  afterAll(() => db.close());

  type App = ReturnType<typeof testApp>["app"];
  const log = async (app: App, did: string, convoId: string) => {
    const page = await clientFor(app, did).getMessages({ convoId });
    expect(page.status).toBe(200);
    return page.data.messages.map((m) => ({ id: m.id, seq: m.seq, ciphertext: m.ciphertext }));
  };

  it("the key reused after expiry, to another conversation and to the same one with another body, stores new messages", async () => {
    const clock = new ManualClock();
    const { app } = testApp(db, {}, clock);
    const alice = unique("did:plc:idemreuse");
    const first = await newConversation(app, alice);
    const second = await newConversation(app, alice);

    const original = await send(app, alice, first, "reused", AQID);
    expect(original.status).toBe(200);
    expect(original.data?.seq).toBe(1);

    clock.advance(TTL_MS + 1000);
    const elsewhere = await send(app, alice, second, "reused", AQID);
    expect(elsewhere.status).toBe(200);
    expect(elsewhere.data && elsewhere.replayed).toBe(false);
    expect(elsewhere.data).toMatchObject({ seq: 1, epoch: 0 });
    expect(elsewhere.data?.messageId).not.toBe(original.data?.messageId);
    expect(await log(app, alice, second)).toEqual([{ id: elsewhere.data?.messageId, seq: 1, ciphertext: AQID }]);

    clock.advance(TTL_MS + 1000);
    const changed = await send(app, alice, first, "reused", BAUG);
    expect(changed.status).toBe(200);
    expect(changed.data && changed.replayed).toBe(false);
    expect(changed.data).toMatchObject({ seq: 2, epoch: 0 });
    expect(await log(app, alice, first)).toEqual([
      { id: original.data?.messageId, seq: 1, ciphertext: AQID },
      { id: changed.data?.messageId, seq: 2, ciphertext: BAUG },
    ]);

    // The stored answer is the new message's, so a repeat within the new entry's life replays it.
    const repeat = await send(app, alice, first, "reused", BAUG);
    expect(repeat.data && repeat.replayed).toBe(true);
    expect(repeat.data).toEqual(changed.data);
  });

  it("the same request repeated after its entry expired, and after cleanup removed it, is sent again", async () => {
    // A short TTL: cleanup runs on the database every test file shares, and a clock days ahead would
    // remove other files' live rows (their key packages expire in a day).
    const clock = new ManualClock();
    const { app } = testApp(db, { IDEMPOTENCY_TTL_SECONDS: "60" }, clock);
    const { alice, convoId } = await soloConversation(app, "did:plc:idemagain");
    const sent = [await send(app, alice, convoId, "again", AQID)];

    clock.advance(61_000);
    sent.push(await send(app, alice, convoId, "again", AQID));

    clock.advance(61_000);
    const cleaned = await cleanupAt(db, clock.now());
    expect(cleaned.ran && cleaned.idempotencyKeys).toBeGreaterThanOrEqual(1);
    sent.push(await send(app, alice, convoId, "again", AQID));

    expect(sent.map((r) => [r.status, r.data?.seq, r.data && r.replayed])).toEqual([
      [200, 1, false],
      [200, 2, false],
      [200, 3, false],
    ]);
    expect((await log(app, alice, convoId)).map((m) => m.id)).toEqual(sent.map((r) => r.data?.messageId));
  });

  it("a repeat whose body arrives after the entry expired is a new action, in memory and in the database", async () => {
    const clock = new ManualClock();
    const ttl = { IDEMPOTENCY_TTL_SECONDS: "60" };
    const { app } = testApp(db, ttl, clock);
    // Another instance (no recent answers) reads the database's record.
    const other = testApp(db, { ...ttl, IDEMPOTENCY_RECENT_BYTES: "0" }, clock).app;
    const { alice, convoId } = await soloConversation(app, "did:plc:idemslow");
    const token = await tokenFor(alice);
    const body = JSON.stringify({ convoId, ciphertext: "AQID", epoch: 0 });
    const headers = { Authorization: `Bearer ${token}`, "Content-Type": "application/json", "Idempotency-Key": "slow" };
    const url = "http://x/xrpc/blue.catbird.mls.sendMessage";
    // Raw: the body is a stream that arrives 2 s (of the test's clock) after the headers.
    const slowBody = () => {
      let sent = false;
      return new ReadableStream<Uint8Array>(
        {
          pull(controller) {
            if (sent) return controller.close();
            clock.advance(2_000);
            sent = true;
            controller.enqueue(new TextEncoder().encode(body));
          },
        },
        { highWaterMark: 0 },
      );
    };
    const post = async (target: App, slow = true) => {
      const res = await target.fetch(
        new Request(url, { method: "POST", headers, body: slow ? slowBody() : body, duplex: "half" } as RequestInit),
      );
      const { seq } = (await res.json()) as { seq: number };
      return [res.status, seq, res.headers.get("Idempotent-Replayed")];
    };

    const sent = [await post(app, false)];
    // Each repeat's headers come 1 s before the entry expires (60 s after its request's body), its body 1 s after.
    for (const target of [app, other]) {
      clock.advance(59_000);
      sent.push(await post(target));
    }
    expect(sent).toEqual([
      [200, 1, null],
      [200, 2, null],
      [200, 3, null],
    ]);
  });
});

describe("lock waits around a key (real PostgreSQL)", () => {
  const db = testDatabase(10);
  afterAll(() => db.close());

  it("a send that took over an expired key and then waits on the conversation longer than the wait limit still sends once", async () => {
    const clock = new ManualClock();
    const { app } = testApp(db, { IDEMPOTENCY_WAIT_MS: "200", IDEMPOTENCY_TTL_SECONDS: "60" }, clock);
    const { alice, convoId } = await soloConversation(app, "did:plc:idemtakeover");
    const sendTaken = () => send(app, alice, convoId, "taken");
    expect((await sendTaken()).status).toBe(200);
    clock.advance(61_000);

    const holder = await holdConversationRow(db, convoId);
    const { ctid } = holder;
    const sending = sendTaken();
    await conversationLockWaiters(db, ctid);
    await new Promise((resolve) => setTimeout(resolve, 600)); // past the 200 ms wait limit
    holder.release();
    await holder.done;
    const sent = await sending;
    expect(sent.status).toBe(200);
    expect(sent.data?.seq).toBe(2);
    const replay = await sendTaken();
    expect(replay.data && replay.replayed).toBe(true);
    expect(replay.data).toEqual(sent.data);
    expect(await messageCount(db, convoId)).toBe(2);
  });
});
