/**
 * Requests that act as a device (`deviceId` on getWelcome, confirmWelcome, updateCursor, sendMessage and
 * streamConvoEvents), on real PostgreSQL: the device must be the caller's and live, welcomes and read cursors are
 * per device, and every message view names its sender's device. Calls go through the typed client; a stream that
 * must be seen to end is read raw (`streamAs`): the client reconnects where a stream ends.
 */
import { afterAll, describe, expect, it } from "vitest";
import { ManualClock } from "../../src/clock.js";
import { recordConvoChange } from "../../src/services/convoChange.js";
import { lockConvo } from "../../src/services/convoLock.js";
import { storeWelcomes } from "../../src/services/welcomes.js";
import { testApp, testDatabase, unique } from "../helpers/context.js";
import { watchingPool } from "../helpers/faults.js";
import { TestGroup } from "../helpers/mls.js";
import type { ConvoStreamEvent, Input } from "mls-delivery-service/client";
import {
  Api,
  base64,
  expectOutcome,
  expectReply,
  ok,
  streamOutcome,
  utf8,
  Xrpc,
  type Outcome,
} from "../messaging/client.js";
import { registerDevices, revokeDeviceRow, streamAs } from "./acting.js";

const db = testDatabase();
afterAll(() => db.close());

const GRACE_SECONDS = 300;
const clock = new ManualClock();
const { app, ctx } = testApp(db, { WELCOME_GRACE_SECONDS: String(GRACE_SECONDS) }, clock);
const api = new Api(app);
const raw = new Xrpc(app);

/** Alice's conversation with Bob, who has the devices phone and laptop (and his implicit one). */
async function setup() {
  const alice = unique("did:plc:aalice");
  const bob = unique("did:plc:abob");
  await registerDevices(db, bob, "phone", "laptop");
  const convoId = await api.createConvo(alice, [bob]);
  return { alice, bob, convoId };
}

/** One Welcome for several recipient devices, stored the way a commit bundle stores it. */
async function storeWelcome(convoId: string, recipients: { did: string; deviceId?: string }[], bytes: Uint8Array) {
  await db.transaction((tx) =>
    storeWelcomes(
      tx,
      convoId,
      bytes,
      recipients.map((recipient) => ({ ...recipient, hash: null })),
      clock.now(),
    ),
  );
}

async function welcomeRows(convoId: string) {
  return db.query<{ recipient_device: string; state: string; error_details: string | null }>(
    `SELECT recipient_device, state, error_details FROM welcome_messages WHERE convo_id = $1 ORDER BY recipient_device, created_at, id`,
    [convoId],
  );
}

const getWelcome = (did: string, convoId: string, deviceId?: string) =>
  api.call(did, "getWelcome", { convoId, deviceId });
const confirm = (did: string, convoId: string, body: Omit<Input<"confirmWelcome">, "convoId">) =>
  api.call(did, "confirmWelcome", { convoId, ...body });

function expectWelcome(reply: Outcome<{ welcome: Uint8Array }>, bytes: Uint8Array) {
  expectOutcome(reply, 200);
  expect(reply.data!.welcome).toEqual(bytes);
}

describe("deviceId names a live device of the caller", () => {
  /** Each method acting as `deviceId`: its reply. */
  const requests: Record<string, (did: string, convoId: string, deviceId: string) => Promise<Outcome<unknown>>> = {
    getWelcome: (did, convoId, deviceId) => getWelcome(did, convoId, deviceId),
    confirmWelcome: (did, convoId, deviceId) => confirm(did, convoId, { success: true, deviceId }),
    updateCursor: (did, convoId, deviceId) => api.call(did, "updateCursor", { convoId, cursor: "c1", deviceId }),
    sendMessage: (did, convoId, deviceId) =>
      api.call(did, "sendMessage", { convoId, ciphertext: utf8("opaque"), epoch: 0, deviceId }),
    "sendMessage with an idempotency key": (did, convoId, deviceId) =>
      api.call(did, "sendMessage", {
        convoId,
        ciphertext: utf8("opaque"),
        epoch: 0,
        deviceId,
        idempotencyKey: unique("k"),
      }),
    streamConvoEvents: (did, convoId, deviceId) => streamOutcome(api, did, { convoId, deviceId }),
  };

  it.each(Object.keys(requests))("%s: 403 UnknownDevice, 403 DeviceRevoked, 400 for a malformed id", async (name) => {
    const request = requests[name]!;
    const { alice, bob, convoId } = await setup();
    await registerDevices(db, alice, "tablet");
    await revokeDeviceRow(db, bob, "laptop");

    expectOutcome(await request(bob, convoId, "watch"), 403, "UnknownDevice");
    // Alice's device is not Bob's.
    expectOutcome(await request(bob, convoId, "tablet"), 403, "UnknownDevice");
    expectOutcome(await request(bob, convoId, "laptop"), 403, "DeviceRevoked");
    // The device is checked before the conversation: it is the caller's identity.
    expectOutcome(await request(bob, "no-such-convo", "watch"), 403, "UnknownDevice");
    for (const malformed of ["", "has space", "x".repeat(65), "a#b"]) {
      expectOutcome(await request(bob, convoId, malformed), 400, "InvalidRequest");
    }
    const [stored] = await db.query<{ messages: number; cursors: number }>(
      `SELECT (SELECT count(*) FROM messages WHERE convo_id = $1 AND sender_did = $2)::int AS messages,
              (SELECT count(*) FROM read_cursors WHERE convo_id = $1)::int AS cursors`,
      [convoId, bob],
    );
    expect(stored).toEqual({ messages: 0, cursors: 0 });

    // A registered, live device is accepted (getWelcome and confirmWelcome find no welcome for it).
    const accepted = await request(bob, convoId, "phone");
    if (name === "getWelcome" || name === "confirmWelcome") expectOutcome(accepted, 404, "WelcomeNotFound");
    else expectOutcome(accepted, 200);
  });

  it("a revoked device's lastSeenAt stays; a live device's moves when it sends", async () => {
    const { bob, convoId } = await setup();
    await revokeDeviceRow(db, bob, "laptop");
    const seen = async () =>
      Object.fromEntries(
        (
          await db.query<{ device_id: string; recent: boolean }>(
            `SELECT device_id, last_seen_at > now() - interval '1 hour' AS recent FROM devices WHERE did = $1`,
            [bob],
          )
        ).map((row) => [row.device_id, row.recent]),
      );
    expect(await seen()).toEqual({ phone: false, laptop: false });
    const send = (deviceId: string) =>
      api.call(bob, "sendMessage", { convoId, ciphertext: utf8("hi"), epoch: 0, deviceId });
    expectOutcome(await send("laptop"), 403, "DeviceRevoked");
    expectOutcome(await send("phone"), 200);
    expect(await seen()).toEqual({ phone: true, laptop: false });
  });

  it("opening a device's stream checks the device and moves its lastSeenAt in the statement that finds the head", async () => {
    const { bob, convoId } = await setup();
    const statements: string[] = [];
    const watched = testApp(watchingPool(db, (sql) => statements.push(sql))).app;
    const stream = await streamAs(watched, bob, convoId, { deviceId: "phone" });
    // Taken when the response head arrived: the stream's own reads come after it.
    const beforeHead = [...statements];
    try {
      expect(stream.status).toBe(200);
      expect(beforeHead).toHaveLength(1);
      const [phone] = await db.query<{ recent: boolean }>(
        `SELECT last_seen_at > now() - interval '1 hour' AS recent FROM devices WHERE did = $1 AND device_id = 'phone'`,
        [bob],
      );
      expect(phone?.recent).toBe(true);
    } finally {
      await stream.close();
    }
  });
});

describe("welcomes are per device", () => {
  it("two devices of Bob each fetch and confirm their own welcome; one's confirmation leaves the other's", async () => {
    const { bob, convoId } = await setup();
    const welcome = Uint8Array.of(1, 2, 3, 4);
    await storeWelcome(
      convoId,
      [
        { did: bob, deviceId: "phone" },
        { did: bob, deviceId: "laptop" },
      ],
      welcome,
    );

    // The implicit device has none of its own.
    expectOutcome(await getWelcome(bob, convoId), 404, "WelcomeNotFound");
    expectOutcome(await confirm(bob, convoId, { success: true }), 404, "WelcomeNotFound");

    expectWelcome(await getWelcome(bob, convoId, "phone"), welcome);
    expectWelcome(await getWelcome(bob, convoId, "phone"), welcome); // again, within the grace period
    expectOutcome(await confirm(bob, convoId, { success: true, deviceId: "phone" }), 200);
    expectOutcome(await getWelcome(bob, convoId, "phone"), 410, "WelcomeGone");
    // Confirming twice is no error.
    expect((await confirm(bob, convoId, { success: true, deviceId: "phone" })).data).toEqual({ confirmed: true });

    // The laptop's welcome was neither fetched nor consumed by the phone.
    expect(await welcomeRows(convoId)).toEqual([
      { recipient_device: "laptop", state: "available", error_details: null },
      { recipient_device: "phone", state: "consumed", error_details: null },
    ]);
    expectWelcome(await getWelcome(bob, convoId, "laptop"), welcome);
    const failed = await confirm(bob, convoId, { success: false, errorDetails: "no key", deviceId: "laptop" });
    expect(failed.data).toEqual({ confirmed: false });
    expectWelcome(await getWelcome(bob, convoId, "laptop"), welcome);
    expect(await welcomeRows(convoId)).toEqual([
      { recipient_device: "laptop", state: "in_flight", error_details: "no key" },
      { recipient_device: "phone", state: "consumed", error_details: null },
    ]);

    // The grace period holds per device: past it, the laptop's in-flight welcome is gone too.
    clock.advance((GRACE_SECONDS + 1) * 1000);
    expectOutcome(await getWelcome(bob, convoId, "laptop"), 410, "WelcomeGone");
    expectOutcome(await confirm(bob, convoId, { success: true, deviceId: "laptop" }), 410, "WelcomeGone");
  });

  it("a new welcome replaces only the same device's live one", async () => {
    const { bob, convoId } = await setup();
    const first = Uint8Array.of(1);
    const second = Uint8Array.of(2);
    await storeWelcome(
      convoId,
      [{ did: bob, deviceId: "phone" }, { did: bob, deviceId: "laptop" }, { did: bob }],
      first,
    );
    await storeWelcome(convoId, [{ did: bob, deviceId: "phone" }], second);

    expect((await welcomeRows(convoId)).map(({ recipient_device, state }) => [recipient_device, state])).toEqual([
      ["", "available"],
      ["laptop", "available"],
      ["phone", "expired"],
      ["phone", "available"],
    ]);
    expectWelcome(await getWelcome(bob, convoId, "phone"), second);
    expectWelcome(await getWelcome(bob, convoId, "laptop"), first);
    expectWelcome(await getWelcome(bob, convoId), first);
  });

  it("leaving retires the welcomes of all the DID's devices", async () => {
    const { bob, convoId } = await setup();
    await storeWelcome(
      convoId,
      [{ did: bob, deviceId: "phone" }, { did: bob, deviceId: "laptop" }, { did: bob }],
      Uint8Array.of(9),
    );
    expectOutcome(await getWelcome(bob, convoId, "phone"), 200);
    expectOutcome(await api.call(bob, "leaveConvo", { convoId }), 200);
    expect((await welcomeRows(convoId)).map((row) => row.state)).toEqual(["expired", "expired", "expired"]);
  });
});

describe("read cursors are per device", () => {
  it("each device keeps its own cursor; the implicit device's is the one without deviceId", async () => {
    const { bob, convoId } = await setup();
    const update = (cursor: string, deviceId?: string) =>
      api.call(bob, "updateCursor", { convoId, cursor, ...(deviceId && { deviceId }) });
    for (const [cursor, deviceId] of [
      ["p1", "phone"],
      ["l1", "laptop"],
      ["i1", undefined],
      ["p2", "phone"],
    ] as const) {
      expect((await update(cursor, deviceId)).data).toEqual({ success: true });
    }
    const rows = await db.query<{ device_id: string; cursor: string }>(
      `SELECT device_id, cursor FROM read_cursors WHERE convo_id = $1 AND did = $2 ORDER BY device_id`,
      [convoId, bob],
    );
    expect(rows).toEqual([
      { device_id: "", cursor: "i1" },
      { device_id: "laptop", cursor: "l1" },
      { device_id: "phone", cursor: "p2" },
    ]);
  });
});

describe("the sender's device on every message view", () => {
  it("getMessages, getCommits and the event stream (replayed and live) carry senderDevice, '' for the implicit device", async () => {
    const { alice, bob, convoId } = await setup();
    // Keyed sends through the typed client; unkeyed ones raw (the typed client keys every procedure).
    const send = async (did: string, text: string, extra: { deviceId?: string; idempotencyKey?: string } = {}) => {
      if (extra.idempotencyKey === undefined) {
        const reply = await raw.post(did, "sendMessage", { convoId, ciphertext: base64(text), epoch: 0, ...extra });
        expectReply(reply, 200);
        return reply.body.seq as number;
      }
      const reply = await ok(api.as(did).sendMessage({ convoId, ciphertext: utf8(text), epoch: 0, ...extra }));
      return reply.data.seq;
    };
    await send(bob, "from the phone", { deviceId: "phone" });
    await send(bob, "from the laptop, keyed", { deviceId: "laptop", idempotencyKey: unique("k") });
    await send(alice, "from alice");
    await send(bob, "from bob's implicit device", { idempotencyKey: unique("k") });

    const expected = [
      { sender: bob, senderDevice: "phone" },
      { sender: bob, senderDevice: "laptop" },
      { sender: alice, senderDevice: "" },
      { sender: bob, senderDevice: "" },
    ];
    const page = await ok(api.as(alice).getMessages({ convoId }));
    expect(page.data.messages.map(({ sender, senderDevice }) => ({ sender, senderDevice }))).toEqual(expected);

    const stop = new AbortController();
    const phone = api.as(bob).streamConvoEvents({ convoId, cursor: 0, deviceId: "phone" }, stop.signal);
    try {
      const first: ConvoStreamEvent[] = [];
      for (let i = 0; i < 6; i++) first.push((await phone.next()).value!);
      const replayed = first.flatMap((event) => (event.type === "message" ? [event.data] : []));
      expect(replayed.map(({ sender, senderDevice }) => ({ sender, senderDevice }))).toEqual(expected);
      await send(bob, "live", { deviceId: "laptop" });
      const live = (await phone.next()).value;
      expect(live).toMatchObject({ type: "message", data: { sender: bob, senderDevice: "laptop" } });
    } finally {
      stop.abort();
      await phone.return(undefined);
    }
  });

  it("a commit through addMembers or leaveConvo as a device records that device (getCommits, events' actorDevice)", async () => {
    const alice = unique("did:plc:aalice");
    const [bob, carol] = [unique("did:plc:abob"), unique("did:plc:acarol")];
    await registerDevices(db, alice, "phone");
    const group = await TestGroup.create({ creatorDid: alice });
    const convoId = await api.createConvo(alice, [bob], { groupId: group.groupIdHex });
    const added = { convoId, didList: [carol], commit: await group.commit(), deviceId: "phone" };
    await ok(api.as(alice).addMembers(added));
    const removed = { convoId, targetDid: carol, commit: await group.commit(), deviceId: "phone" };
    await ok(api.as(alice).leaveConvo(removed));

    const commits = await ok(api.as(alice).getCommits({ convoId, fromEpoch: 0 }));
    expect(commits.data.commits.map(({ sender, senderDevice }) => ({ sender, senderDevice }))).toEqual([
      { sender: alice, senderDevice: "phone" },
      { sender: alice, senderDevice: "phone" },
    ]);
    const events = await db.query<{ payload: Record<string, string> }>(
      `SELECT payload FROM events WHERE convo_id = $1 AND kind = 'membership' AND payload->>'did' = $2 ORDER BY seq`,
      [convoId, carol],
    );
    expect(events.map(({ payload: { type, actor, actorDevice } }) => ({ type, actor, actorDevice }))).toEqual([
      { type: "joined", actor: alice, actorDevice: "phone" },
      { type: "removed", actor: alice, actorDevice: "phone" },
    ]);
  });

  it("a device's stream ends after its own deviceRevoked event; another device's stream goes on", async () => {
    const { alice, bob, convoId } = await setup();
    const phone = await streamAs(app, bob, convoId, { deviceId: "phone" });
    const laptop = await streamAs(app, bob, convoId, { deviceId: "laptop" });
    await db.transaction(async (tx) => {
      const convo = await lockConvo(tx, convoId, bob);
      await recordConvoChange(tx, convo, {
        sender: bob,
        membership: [{ type: "deviceRevoked", did: bob, deviceId: "phone", actor: bob }],
        now: clock.now(),
      });
    });
    // What revokeDevice's answer does for its writes: wake this conversation's streams.
    ctx.events.publish(convoId);
    const revoked = { event: "membership", data: { type: "deviceRevoked", did: bob, deviceId: "phone" } };
    expect(await phone.events!.nextParsed()).toMatchObject(revoked);
    expect(await phone.events!.nextParsed()).toBeUndefined();

    expect(await laptop.events!.nextParsed()).toMatchObject(revoked);
    await ok(api.as(alice).sendMessage({ convoId, ciphertext: utf8("still here"), epoch: 0 }));
    expect(await laptop.events!.nextParsed()).toMatchObject({ event: "message", data: { sender: alice } });
    await laptop.close();
  });
});
