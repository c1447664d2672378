/**
 * revokeDevice over HTTP (in process) on real PostgreSQL: what a revocation does to the device's key packages,
 * welcomes and the conversations whose roster holds it, in one transaction; repeats, idempotency keys, errors.
 * Well-formed calls go through the typed client; bad input, and a refusal's replay header, are raw (`xrpc`).
 */
import { afterAll, describe, expect, it } from "vitest";
import { requireDevice } from "../../src/services/actingDevice.js";
import { randomGroupId, testApp, testDatabase, unique } from "../helpers/context.js";
import { xrpc } from "../helpers/xrpc.js";
import { Api, expectOutcome, firstEvents } from "../messaging/client.js";
import {
  insertKeyPackage,
  insertRoster,
  insertWelcome,
  keyPackageHashes,
  membershipEvents,
  SUITE,
  welcomeStates,
} from "./rows.js";

const db = testDatabase();
afterAll(() => db.close());

const { app } = testApp(db);

const api = new Api(app);

/** revokeDevice through the typed client, as an outcome; `idempotencyKey`: the call's key (else a fresh one). */
const revoke = (did: string, input: { deviceId: string; idempotencyKey?: string }, idempotencyKey?: string) =>
  api.call(did, "revokeDevice", { ...input, ...(idempotencyKey !== undefined && { idempotencyKey }) });
/** revokeDevice sent raw: bad input, headers. */
const revokeRaw = (did: string, body: unknown, headers: Record<string, string> = {}) =>
  xrpc(app, did, "revokeDevice", { body, headers });

async function registered(did: string, ...deviceIds: string[]): Promise<void> {
  for (const deviceId of deviceIds) expectOutcome(await api.call(did, "registerDevice", { deviceId }), 200);
}

async function convo(creator: string, members: string[] = []): Promise<string> {
  return api.createConvo(creator, members, { groupId: randomGroupId(), cipherSuite: SUITE });
}

const lastEventSeq = async (convoId: string) => {
  const [row] = await db.query<{ seq: number }>(
    `SELECT coalesce(max(seq), 0)::int AS seq FROM events WHERE convo_id = $1`,
    [convoId],
  );
  return row!.seq;
};

describe("revokeDevice", () => {
  it("marks the device revoked: requireDevice refuses it, getDevices shows it", async () => {
    const alice = unique("did:plc:alice");
    await registered(alice, "phone", "laptop");
    const answer = await revoke(alice, { deviceId: "phone" });
    expect(answer.status).toBe(200);
    expect(answer.data).toEqual({ revoked: true });

    await expect(requireDevice(db, alice, "phone", new Date())).rejects.toMatchObject({
      status: 403,
      error: "DeviceRevoked",
    });
    expect(await requireDevice(db, alice, "laptop", new Date())).toBe("laptop");
    const listed = (await api.as(alice).getDevices()).data.devices;
    expect(listed.map((d) => [d.deviceId, d.revoked])).toEqual([
      ["phone", true],
      ["laptop", false],
    ]);
  });

  it("deletes the device's key packages never handed out, and its last-resort ones; keeps everything else", async () => {
    const [alice, bob] = [unique("did:plc:alice"), unique("did:plc:bob")];
    await registered(alice, "phone", "laptop");
    const gone = [
      await insertKeyPackage(db, { owner: alice, deviceId: "phone" }),
      await insertKeyPackage(db, { owner: alice, deviceId: "phone" }),
      await insertKeyPackage(db, { owner: alice, deviceId: "phone", lastResort: true, handedOutTo: bob }),
    ];
    const kept = [
      // Handed out: a welcome may be built from it.
      await insertKeyPackage(db, { owner: alice, deviceId: "phone", handedOutTo: bob }),
      await insertKeyPackage(db, { owner: alice, deviceId: "laptop" }),
      await insertKeyPackage(db, { owner: alice, deviceId: "laptop", lastResort: true }),
      await insertKeyPackage(db, { owner: alice, deviceId: "" }),
    ];
    const bobs = await insertKeyPackage(db, { owner: bob, deviceId: "phone" });

    expect((await revoke(alice, { deviceId: "phone" })).status).toBe(200);
    expect(await keyPackageHashes(db, alice)).toEqual([...kept].sort());
    expect(await keyPackageHashes(db, bob)).toEqual([bobs]);
    expect(gone.some((hash) => kept.includes(hash))).toBe(false);
  });

  it("retires the device's live welcomes in every conversation, and only those", async () => {
    const [alice, bob] = [unique("did:plc:alice"), unique("did:plc:bob")];
    await registered(alice, "phone", "laptop");
    const [one, two, three] = [await convo(bob, [alice]), await convo(bob, [alice]), await convo(bob, [alice])];
    const builtFrom = await insertKeyPackage(db, { owner: alice, deviceId: "phone", handedOutTo: bob });
    const retired = [
      await insertWelcome(db, {
        convoId: one,
        did: alice,
        deviceId: "phone",
        state: "available",
        keyPackageHash: builtFrom,
      }),
      await insertWelcome(db, { convoId: two, did: alice, deviceId: "phone", state: "in_flight" }),
    ];
    const others = {
      [await insertWelcome(db, { convoId: three, did: alice, deviceId: "phone", state: "consumed" })]: "consumed",
      [await insertWelcome(db, { convoId: one, did: alice, deviceId: "laptop", state: "available" })]: "available",
      [await insertWelcome(db, { convoId: two, did: alice, deviceId: "", state: "in_flight" })]: "in_flight",
      [await insertWelcome(db, { convoId: one, did: bob, deviceId: "phone", state: "available" })]: "available",
    };

    expect((await revoke(alice, { deviceId: "phone" })).status).toBe(200);
    expect(await welcomeStates(db, [...retired, ...Object.keys(others)])).toEqual({
      [retired[0]!]: "expired",
      [retired[1]!]: "expired",
      ...others,
    });
    // The key package the retired welcome was built from is used up, as when any welcome retires.
    const [pkg] = await db.query<{ consumed: boolean }>(
      `SELECT consumed_at IS NOT NULL AS consumed FROM key_packages WHERE owner_did = $1 AND hash = $2`,
      [alice, builtFrom],
    );
    expect(pkg).toEqual({ consumed: true });
  });

  it("posts deviceRevoked in each conversation whose roster holds the device, at its epoch, and nowhere else", async () => {
    const [alice, bob] = [unique("did:plc:alice"), unique("did:plc:bob")];
    await registered(alice, "phone", "laptop");
    await registered(bob, "phone");
    const holding = [await convo(alice, [bob]), await convo(bob, [alice])];
    const notHolding = [await convo(alice, [bob]), await convo(bob)];
    await insertRoster(db, holding[0]!, [
      { did: alice, deviceId: "phone" },
      { did: alice, deviceId: "laptop" },
      { did: bob, deviceId: "" },
    ]);
    await insertRoster(db, holding[1]!, [
      { did: bob, deviceId: "phone" },
      { did: alice, deviceId: "phone" },
    ]);
    // Alice's laptop and Bob's phone (same device id, another DID) are not the device revoked.
    await insertRoster(db, notHolding[0]!, [
      { did: alice, deviceId: "laptop" },
      { did: bob, deviceId: "" },
    ]);
    await insertRoster(db, notHolding[1]!, [{ did: bob, deviceId: "phone" }]);
    await db.query(`UPDATE conversations SET epoch = 4 WHERE id = $1`, [holding[1]]);
    const before = new Map(
      await Promise.all([...holding, ...notHolding].map(async (id) => [id, await lastEventSeq(id)] as const)),
    );

    expect((await revoke(alice, { deviceId: "phone" })).status).toBe(200);

    const event = (epoch: number) => ({ type: "deviceRevoked", did: alice, deviceId: "phone", actor: alice, epoch });
    expect(await membershipEvents(db, holding[0]!, before.get(holding[0]!))).toEqual([event(0)]);
    expect(await membershipEvents(db, holding[1]!, before.get(holding[1]!))).toEqual([event(4)]);
    for (const id of notHolding) expect(await lastEventSeq(id)).toBe(before.get(id));
    // No commit: the epoch stays.
    const [row] = await db.query<{ epoch: number }>(`SELECT epoch::int FROM conversations WHERE id = $1`, [holding[1]]);
    expect(row!.epoch).toBe(4);

    // Members see it on the conversation's event stream.
    const [seen] = await firstEvents(api.as(bob), { convoId: holding[0]!, cursor: before.get(holding[0]!) }, 1);
    expect(seen).toMatchObject({ type: "membership", data: event(0) });

    // Revoking again posts nothing more.
    const after = await lastEventSeq(holding[0]!);
    expect((await revoke(alice, { deviceId: "phone" })).data).toEqual({ revoked: true });
    expect(await lastEventSeq(holding[0]!)).toBe(after);
  });

  it("answers the same to a repeat and changes nothing; an unknown device is 403 UnknownDevice", async () => {
    const [alice, bob] = [unique("did:plc:alice"), unique("did:plc:bob")];
    await registered(alice, "phone");
    expect((await revoke(alice, { deviceId: "phone" })).status).toBe(200);
    const [first] = await db.query<{ revoked_at: Date }>(`SELECT revoked_at FROM devices WHERE did = $1`, [alice]);
    // A package published after the revocation (no publisher may, but the repeat must not touch rows anyway).
    const later = await insertKeyPackage(db, { owner: alice, deviceId: "phone" });

    const repeat = await revoke(alice, { deviceId: "phone" });
    expect([repeat.status, repeat.data]).toEqual([200, { revoked: true }]);
    const [second] = await db.query<{ revoked_at: Date }>(`SELECT revoked_at FROM devices WHERE did = $1`, [alice]);
    expect(second).toEqual(first);
    expect(await keyPackageHashes(db, alice)).toEqual([later]);

    for (const [did, deviceId] of [
      [alice, "tablet"],
      [bob, "phone"],
    ] as const) {
      const unknown = await revoke(did, { deviceId });
      expect(unknown).toMatchObject({ status: 403, error: "UnknownDevice", message: expect.any(String) });
    }
    // Bob's attempt left Alice's device as it was.
    expect((await db.query(`SELECT 1 FROM devices WHERE did = $1 AND revoked_at IS NOT NULL`, [alice])).length).toBe(1);
  });

  it("replays an idempotency key's answer without doing anything again; another body with the key is 422", async () => {
    const [alice, bob] = [unique("did:plc:alice"), unique("did:plc:bob")];
    await registered(alice, "phone", "laptop");
    const convoId = await convo(alice, [bob]);
    await insertRoster(db, convoId, [{ did: alice, deviceId: "phone" }]);
    const start = await lastEventSeq(convoId);

    const first = await revoke(alice, { deviceId: "phone", idempotencyKey: "revoke-1" });
    expect(first.status).toBe(200);
    const replay = await revoke(alice, { deviceId: "phone", idempotencyKey: "revoke-1" });
    expect([replay.status, replay.error === undefined && replay.replayed, replay.data]).toEqual([
      200,
      true,
      first.data,
    ]);
    expect(await membershipEvents(db, convoId, start)).toHaveLength(1);

    const reused = await revoke(alice, { deviceId: "laptop", idempotencyKey: "revoke-1" });
    expect([reused.status, reused.error]).toEqual([422, "IdempotencyKeyReused"]);
    expect((await db.query(`SELECT 1 FROM devices WHERE did = $1 AND revoked_at IS NULL`, [alice])).length).toBe(1);

    // A refusal is replayed as well, even once the device exists.
    const refused = await revoke(alice, { deviceId: "tablet" }, "revoke-2");
    expect(refused.error).toBe("UnknownDevice");
    await registered(alice, "tablet");
    // Raw: the client shows no replay header on an error answer.
    const again = await revokeRaw(alice, { deviceId: "tablet" }, { "Idempotency-Key": "revoke-2" });
    expect([again.status, again.body.error, again.headers.get("Idempotent-Replayed")]).toEqual([
      403,
      "UnknownDevice",
      "true",
    ]);
  });

  it("answers 400 InvalidRequest, never 5xx, for bad input", async () => {
    const alice = unique("did:plc:alice");
    await registered(alice, "phone");
    for (const body of [
      {},
      { deviceId: "" },
      { deviceId: "x".repeat(65) },
      { deviceId: "a b" },
      { deviceId: 1 },
      { deviceId: "phone", name: "x" },
      { deviceId: "phone", revoked: true },
      [],
      null,
    ]) {
      const answer = await revokeRaw(alice, body);
      expect([answer.status, answer.body.error], JSON.stringify(body)).toEqual([400, "InvalidRequest"]);
    }
    expect((await db.query(`SELECT 1 FROM devices WHERE did = $1 AND revoked_at IS NULL`, [alice])).length).toBe(1);
  });
});
