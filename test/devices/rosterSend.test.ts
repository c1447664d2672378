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
import type { Input } from "mls-delivery-service/client";
import {
  Api,
  base64,
  expectOutcome,
  expectReply,
  messageOf,
  ok,
  randomBytes,
  rawOutcome,
  storedMessages,
  Xrpc,
} from "../messaging/client.js";
import { registerDevices, revokeDeviceRow, rosterChecked } from "./acting.js";

const db = testDatabase();
afterAll(() => db.close());

/**
 * Alice's conversation over a real ts-mls group with Bob (devices phone and laptop): roster-checked with Alice's
 * implicit device and Bob's phone in the roster, unless `checked` is false.
 */
async function setup(api: Api, { checked = true } = {}) {
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
const sendInput = (
  convoId: string,
  ciphertext: Uint8Array,
  extra: { deviceId?: string; idempotencyKey?: string } = {},
): Input<"sendMessage"> => ({ convoId, ciphertext, epoch: 0, ...extra });

/**
 * sendMessage as `did`: keyed through the typed client, unkeyed raw (the typed client keys every procedure, and
 * these tests send both ways).
 */
async function send(api: Api, raw: Xrpc, did: string, input: Input<"sendMessage">) {
  if (input.idempotencyKey !== undefined) return api.call(did, "sendMessage", input);
  return rawOutcome(await raw.post(did, "sendMessage", { ...input, ciphertext: base64(input.ciphertext) }));
}

describe("sendMessage in a roster-checked conversation", () => {
  const { app } = testApp(db);
  const api = new Api(app);
  const raw = new Xrpc(app);

  it("takes MLS application messages and proposals from devices in the roster, keyed or not", async () => {
    const { alice, bob, convoId, group } = await setup(api);
    const sends = [
      { did: bob, input: sendInput(convoId, await group.application("phone"), { deviceId: "phone" }) },
      {
        did: bob,
        input: sendInput(convoId, await group.application("keyed"), { deviceId: "phone", idempotencyKey: unique("k") }),
      },
      { did: alice, input: sendInput(convoId, await group.application("alice")) },
      { did: alice, input: sendInput(convoId, await group.proposal()) },
    ];
    for (const { did, input } of sends) expectOutcome(await send(api, raw, did, input), 200);
    const page = await ok(api.as(alice).getMessages({ convoId }));
    expect(page.data.messages.map((m) => [m.sender, m.senderDevice, m.messageType])).toEqual([
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
      const laptop = await send(api, raw, bob, sendInput(convoId, application, { deviceId: "laptop", ...keyed() }));
      expectOutcome(laptop, 403, "NotMember");
      expect(messageOf(laptop)).toMatch(/roster/);
      expectOutcome(await send(api, raw, bob, sendInput(convoId, application, keyed())), 403, "NotMember");
      // Opaque bytes from a device in the roster.
      for (const opaque of [randomBytes(64), new TextEncoder().encode("plain text")]) {
        const reply = await send(api, raw, bob, sendInput(convoId, opaque, { deviceId: "phone", ...keyed() }));
        expectOutcome(reply, 400, "NotApplicationMessage");
      }
    }
    expect(await storedMessages(db, convoId)).toEqual([]);
  });

  it("a conversation that is not roster-checked keeps taking opaque bytes from any live device", async () => {
    const { bob, convoId } = await setup(api, { checked: false });
    for (const deviceId of [undefined, "phone", "laptop"]) {
      await ok(api.as(bob).sendMessage(sendInput(convoId, randomBytes(32), { deviceId })));
    }
    expect((await storedMessages(db, convoId)).length).toBe(3);
  });
});

describe("a send that waited for the conversation", () => {
  const api = new Api(testApp(db).app);

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
    let reply: ReturnType<typeof api.call<"sendMessage">> | undefined;
    await db.transaction(async (tx) => {
      await change.lockDevice?.(tx, bob);
      const convo = await lockConvo(tx, convoId, bob);
      const [row] = await tx.query<{ ctid: string }>(`SELECT ctid::text FROM conversations WHERE id = $1`, [convoId]);
      reply = api.call(bob, "sendMessage", sendInput(convoId, bytes, { deviceId: "phone" }));
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
    expectOutcome(answer, 403, "NotMember");
    expect(messages).toEqual([]);
  });

  it("is refused when the revocation it waited for revoked its device", async () => {
    const { answer, messages } = await sendWhileHeld(
      (bob) => ({ type: "deviceRevoked", did: bob, deviceId: "phone", actor: bob }),
      { lockDevice: (tx, bob) => revokeDeviceRow(tx, bob, "phone") },
    );
    expectOutcome(answer, 403, "DeviceRevoked");
    expect(messages).toEqual([]);
  });
});

describe("the common send is one statement (a batch of its own when alone)", () => {
  const statements: string[] = [];
  const counted = withStatementHook(db, async (sql) => void statements.push(sql));
  const { app } = testApp(counted);
  const api = new Api(app);
  const raw = new Xrpc(app);

  it.each([
    ["without deviceId (Alice's implicit device)", "alice", {}],
    ["as a device (Bob's phone)", "bob", { deviceId: "phone" }],
  ] as const)("unkeyed and keyed, %s, in a plain and a roster-checked conversation", async (_, sender, device) => {
    for (const checked of [false, true]) {
      const convo = await setup(api, { checked });
      const { convoId, group } = convo;
      for (const keyed of [{}, { idempotencyKey: unique("k") }]) {
        statements.length = 0;
        const input = sendInput(convoId, await group.application(), { ...device, ...keyed });
        expectOutcome(await send(api, raw, convo[sender], input), 200);
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
      const { app } = testApp(single);
      const convo = await setup(new Api(app), { checked: false });
      // Raw: the plan of the unkeyed send (the typed client keys every procedure).
      const raw = new Xrpc(app);
      for (let i = 0; i < 12; i++) {
        const bytes = mls ? await convo.group.application(`m${i}`) : randomBytes(48);
        expectReply(await raw.post(convo[sender], "sendMessage", sendBody(convo.convoId, bytes, device)), 200);
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
