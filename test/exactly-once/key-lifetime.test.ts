/**
 * A key's effect lives exactly as long as its entry (rule 6): once the entry has expired, the same
 * key is a new action that stores a new message and answers with it, never with an earlier one.
 */
import { afterAll, describe, expect, it } from "vitest";
import { ManualClock } from "../../src/clock.js";
import { runCleanup } from "../../src/jobs/cleanup.js";
import { randomGroupId, testApp, testDatabase, tokenFor, unique } from "../helpers/context.js";
import { conversationLockWaiters, holdRowLock } from "../helpers/rowLock.js";
import { clientFor, outcome } from "../helpers/client.js";

const SUITE = "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519";
const TTL_MS = 86_400_000;
const AQID = new Uint8Array([1, 2, 3]);
const BAUG = new Uint8Array([4, 5, 6]);

describe("an expired idempotency key is a new action (real PostgreSQL)", () => {
  const db = testDatabase(10);
  afterAll(() => db.close());

  type App = ReturnType<typeof testApp>["app"];
  const createConvo = async (app: App, did: string) => {
    const created = await clientFor(app, did).createConvo({ groupId: randomGroupId(), cipherSuite: SUITE });
    expect(created.status).toBe(200);
    return created.data.id;
  };
  const send = (app: App, did: string, convoId: string, key: string, ciphertext: Uint8Array) =>
    outcome(clientFor(app, did).sendMessage({ convoId, ciphertext, epoch: 0 }, { idempotencyKey: key }));
  const log = async (app: App, did: string, convoId: string) => {
    const page = await clientFor(app, did).getMessages({ convoId });
    expect(page.status).toBe(200);
    return page.data.messages.map((m) => ({ id: m.id, seq: m.seq, ciphertext: m.ciphertext }));
  };

  it("the key reused after expiry, to another conversation and to the same one with another body, stores new messages", async () => {
    const clock = new ManualClock();
    const { app } = testApp(db, {}, clock);
    const alice = unique("did:plc:idemreuse");
    const first = await createConvo(app, alice);
    const second = await createConvo(app, alice);

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
    const alice = unique("did:plc:idemagain");
    const convoId = await createConvo(app, alice);
    const sent = [await send(app, alice, convoId, "again", AQID)];

    clock.advance(61_000);
    sent.push(await send(app, alice, convoId, "again", AQID));

    clock.advance(61_000);
    const cleaned = await runCleanup(db, {
      now: clock.now(),
      welcomeGraceSeconds: 300,
      welcomeTtlSeconds: 604_800,
      retentionDays: 30,
    });
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
    const alice = unique("did:plc:idemslow");
    const convoId = await createConvo(app, alice);
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
    const alice = unique("did:plc:idemtakeover");
    const created = await clientFor(app, alice).createConvo({ groupId: randomGroupId(), cipherSuite: SUITE });
    const convoId = created.data.id;
    const send = () =>
      outcome(clientFor(app, alice).sendMessage({ convoId, ciphertext: AQID, epoch: 0 }, { idempotencyKey: "taken" }));
    expect((await send()).status).toBe(200);
    clock.advance(61_000);

    const holder = holdRowLock<{ ctid: string }>(db, `SELECT ctid::text FROM conversations WHERE id = $1 FOR UPDATE`, [
      convoId,
    ]);
    const ctid = (await holder.held)[0]!.ctid;
    const sending = send();
    await conversationLockWaiters(db, ctid);
    await new Promise((resolve) => setTimeout(resolve, 600)); // past the 200 ms wait limit
    holder.release();
    await holder.done;
    const sent = await sending;
    expect(sent.status).toBe(200);
    expect(sent.data?.seq).toBe(2);
    const replay = await send();
    expect(replay.data && replay.replayed).toBe(true);
    expect(replay.data).toEqual(sent.data);
    const [row] = await db.query<{ messages: number }>(
      `SELECT count(*) AS messages FROM messages WHERE convo_id = $1`,
      [convoId],
    );
    expect(row!.messages).toBe(2);
  });
});
