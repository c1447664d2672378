/**
 * sendMessage as a device, on real PostgreSQL: in a roster-checked conversation only a device in the roster sends,
 * and only MLS application messages or proposals (rule 3); a send that waited for the conversation while a roster
 * change or a revocation committed is refused; and the common send, keyed or not, is still one statement.
 */
import { afterAll, describe, expect, it } from "vitest";
import type { Queryable } from "../../src/db/driver.js";
import { recordConvoChange, type MembershipEvent } from "../../src/services/convoChange.js";
import { lockConvo } from "../../src/services/convoLock.js";
import { SEND_BATCH_SQL } from "../../src/services/sendBatch.js";
import { testApp, testDatabase, unique } from "../helpers/context.js";
import { withStatementHook } from "../helpers/faults.js";
import { TestGroup } from "../helpers/mls.js";
import { conversationLockWaiters } from "../helpers/rowLock.js";
import { base64, expectReply, randomBytes, storedMessages, Xrpc } from "../messaging/client.js";
import { registerDevices, revokeDeviceRow, rosterChecked } from "./acting.js";

const db = testDatabase();
afterAll(() => db.close());

/**
 * Alice's conversation over a real ts-mls group with Bob (devices phone and laptop): roster-checked with Alice's
 * implicit device and Bob's phone in the roster, unless `checked` is false.
 */
async function setup(api: Xrpc, { checked = true } = {}) {
  const alice = unique("did:plc:ralice");
  const bob = unique("did:plc:rbob");
  await registerDevices(db, bob, "phone", "laptop");
  const group = await TestGroup.create({ creatorDid: alice });
  const convoId = await api.createConvo(alice, [bob], { groupId: group.groupIdHex });
  if (checked) {
    await rosterChecked(db, convoId, [
      { did: alice, deviceId: "" },
      { did: bob, deviceId: "phone" },
    ]);
  }
  return { alice, bob, convoId, group };
}

const sendBody = (convoId: string, bytes: Uint8Array, extra: Record<string, unknown> = {}) => ({
  convoId,
  ciphertext: base64(bytes),
  epoch: 0,
  ...extra,
});

describe("sendMessage in a roster-checked conversation", () => {
  const api = new Xrpc(testApp(db).app);

  it("takes MLS application messages and proposals from devices in the roster, keyed or not", async () => {
    const { alice, bob, convoId, group } = await setup(api);
    const sends = [
      { did: bob, body: sendBody(convoId, await group.application("phone"), { deviceId: "phone" }) },
      {
        did: bob,
        body: sendBody(convoId, await group.application("keyed"), { deviceId: "phone", idempotencyKey: unique("k") }),
      },
      { did: alice, body: sendBody(convoId, await group.application("alice")) },
      { did: alice, body: sendBody(convoId, await group.proposal()) },
    ];
    for (const { did, body } of sends) expectReply(await api.post(did, "sendMessage", body), 200);
    const page = await api.get(alice, "getMessages", { convoId });
    expect(page.body.messages.map((m: Record<string, string>) => [m.sender, m.senderDevice, m.messageType])).toEqual([
      [bob, "phone", "app"],
      [bob, "phone", "app"],
      [alice, "", "app"],
      [alice, "", "proposal"],
    ]);
  });

  it("refuses a device not in the roster (403 NotMember) and bytes that are no MLS message (400 NotApplicationMessage)", async () => {
    const { bob, convoId, group } = await setup(api);
    const application = await group.application();
    for (const withKey of [false, true]) {
      const keyed = () => (withKey ? { idempotencyKey: unique("k") } : {});
      // A registered device of a member, not in the MLS group; and the member's implicit device, not in it either.
      const laptop = await api.post(
        bob,
        "sendMessage",
        sendBody(convoId, application, { deviceId: "laptop", ...keyed() }),
      );
      expectReply(laptop, 403, "NotMember");
      expect(laptop.body.message).toMatch(/roster/);
      expectReply(await api.post(bob, "sendMessage", sendBody(convoId, application, keyed())), 403, "NotMember");
      // Opaque bytes from a device in the roster.
      for (const opaque of [randomBytes(64), new TextEncoder().encode("plain text")]) {
        const reply = await api.post(bob, "sendMessage", sendBody(convoId, opaque, { deviceId: "phone", ...keyed() }));
        expectReply(reply, 400, "NotApplicationMessage");
      }
    }
    expect(await storedMessages(db, convoId)).toEqual([]);
  });

  it("a conversation that is not roster-checked keeps taking opaque bytes from any live device", async () => {
    const { bob, convoId } = await setup(api, { checked: false });
    for (const deviceId of [undefined, "phone", "laptop"]) {
      expectReply(await api.post(bob, "sendMessage", sendBody(convoId, randomBytes(32), { deviceId })), 200);
    }
    expect((await storedMessages(db, convoId)).length).toBe(3);
  });
});

describe("a send that waited for the conversation", () => {
  const api = new Xrpc(testApp(db).app);

  /**
   * Sends as Bob's phone while a transaction holds the conversation, and commits `change` (with the membership
   * event it posts) only once the send waits for the conversation row: the send's own snapshot still had the
   * phone in the roster and live. `lockDevice` runs first, as revokeDevice locks a device before conversations.
   */
  async function sendWhileHeld(
    event: (bob: string) => MembershipEvent,
    change: {
      lockDevice?: (tx: Queryable, bob: string) => Promise<void>;
      underLock?: (tx: Queryable, bob: string, convoId: string) => Promise<void>;
    },
  ) {
    const { bob, convoId, group } = await setup(api);
    const bytes = await group.application();
    let reply: ReturnType<typeof api.post> | undefined;
    await db.transaction(async (tx) => {
      await change.lockDevice?.(tx, bob);
      const convo = await lockConvo(tx, convoId, bob);
      const [row] = await tx.query<{ ctid: string }>(`SELECT ctid::text FROM conversations WHERE id = $1`, [convoId]);
      reply = api.post(bob, "sendMessage", sendBody(convoId, bytes, { deviceId: "phone" }));
      await conversationLockWaiters(db, row!.ctid, 1);
      await change.underLock?.(tx, bob, convoId);
      await recordConvoChange(tx, convo, { sender: bob, membership: [event(bob)], now: new Date() });
    });
    return { answer: await reply!, messages: await storedMessages(db, convoId) };
  }

  it("is refused when the roster change it waited for removed its device", async () => {
    const { answer, messages } = await sendWhileHeld(
      (bob) => ({ type: "deviceRemoved", did: bob, deviceId: "phone", actor: bob }),
      {
        underLock: async (tx, bob, convoId) => {
          await tx.query(`DELETE FROM roster WHERE convo_id = $1 AND did = $2 AND device_id = 'phone'`, [convoId, bob]);
        },
      },
    );
    expectReply(answer, 403, "NotMember");
    expect(messages).toEqual([]);
  });

  it("is refused when the revocation it waited for revoked its device", async () => {
    const { answer, messages } = await sendWhileHeld(
      (bob) => ({ type: "deviceRevoked", did: bob, deviceId: "phone", actor: bob }),
      { lockDevice: (tx, bob) => revokeDeviceRow(tx, bob, "phone") },
    );
    expectReply(answer, 403, "DeviceRevoked");
    expect(messages).toEqual([]);
  });
});

describe("the common send is one statement (a batch of its own when alone)", () => {
  const statements: string[] = [];
  const counted = withStatementHook(db, async (sql) => void statements.push(sql));
  const api = new Xrpc(testApp(counted).app);

  it.each([
    ["without deviceId (Alice's implicit device)", "alice", {}],
    ["as a device (Bob's phone)", "bob", { deviceId: "phone" }],
  ] as const)("unkeyed and keyed, %s, in a plain and a roster-checked conversation", async (_, sender, device) => {
    for (const checked of [false, true]) {
      const convo = await setup(api, { checked });
      const { convoId, group } = convo;
      for (const keyed of [{}, { idempotencyKey: unique("k") }]) {
        statements.length = 0;
        const body = sendBody(convoId, await group.application(), { ...device, ...keyed });
        expectReply(await api.post(convo[sender], "sendMessage", body), 200);
        expect(statements).toEqual([SEND_BATCH_SQL]);
      }
    }
  });
});

describe("the common send is planned once", () => {
  /**
   * A send PostgreSQL re-plans on every execution costs its planning each time (more than the send itself): after
   * its first executions the prepared statement must run its generic plan, whatever the parameters (a custom plan
   * that folds the implicit device's '' or the opaque flag away must not look cheaper than the generic one). Each
   * case runs on a connection of its own, whose prepared statements pg_prepared_statements shows.
   */
  it.each([
    ["opaque bytes from the implicit device", "alice", {}, false],
    ["MLS messages from the implicit device", "alice", {}, true],
    ["opaque bytes from a device", "bob", { deviceId: "phone" }, false],
  ] as const)("%s", async (_, sender, device, mls) => {
    const single = testDatabase(1);
    try {
      const api = new Xrpc(testApp(single).app);
      const convo = await setup(api, { checked: false });
      for (let i = 0; i < 12; i++) {
        const bytes = mls ? await convo.group.application(`m${i}`) : randomBytes(48);
        expectReply(await api.post(convo[sender], "sendMessage", sendBody(convo.convoId, bytes, device)), 200);
      }
      const [plans] = await single.query<{ generic_plans: number }>(
        `SELECT generic_plans FROM pg_prepared_statements WHERE statement = $1`,
        [SEND_BATCH_SQL],
      );
      expect(Number(plans?.generic_plans)).toBeGreaterThan(0);
    } finally {
      await single.close();
    }
  });
});
