/**
 * revokeDevice for a device many conversations hold: anyone who can add the device (its last-resort package serves
 * every adder) can put it into as many conversations as they create, and the revocation must still go through in
 * one short transaction. Its deviceRevoked events reach live streams at once, like any change a request makes.
 */
import { afterAll, expect, it } from "vitest";
import { randomGroupId, testApp, testDatabase, unique } from "../helpers/context.js";
import { withStatementHook } from "../helpers/faults.js";
import { xrpc } from "../helpers/xrpc.js";
import { stream } from "../events/convo.js";
import { insertRoster, membershipEvents, SUITE } from "./rows.js";

const db = testDatabase();
afterAll(() => db.close());

let statements = 0;
const counted = withStatementHook(db, async () => void statements++);
// No stream reads again until something wakes it: a deviceRevoked event must be announced to reach it.
const { app } = testApp(counted, { EVENTS_POLL_MS: "600000", EVENTS_SAFETY_POLL_MS: "600000" });

async function convosHolding(did: string, deviceId: string, count: number, member: string): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    const created = await xrpc(app, member, "createConvo", {
      body: { groupId: randomGroupId(), cipherSuite: SUITE, initialMembers: [did] },
    });
    expect(created.status, JSON.stringify(created.body)).toBe(200);
    await insertRoster(db, created.body.id, [
      { did: member, deviceId: "" },
      { did, deviceId },
    ]);
    ids.push(created.body.id);
  }
  return ids;
}

/** Statements revokeDevice runs to revoke `did`'s `deviceId`. */
async function revokeStatements(did: string, deviceId: string): Promise<number> {
  const before = statements;
  const answer = await xrpc(app, did, "revokeDevice", { body: { deviceId } });
  expect([answer.status, answer.body]).toEqual([200, { revoked: true }]);
  return statements - before;
}

it("takes as many statements for a device 24 conversations hold as for one one holds, and posts deviceRevoked in each", async () => {
  const [alice, bob] = [unique("did:plc:alice"), unique("did:plc:bob")];
  for (const deviceId of ["phone", "tablet"]) {
    expect((await xrpc(app, alice, "registerDevice", { body: { deviceId } })).status).toBe(200);
  }
  await convosHolding(alice, "phone", 1, bob);
  const many = await convosHolding(alice, "tablet", 24, bob);

  const one = await revokeStatements(alice, "phone");
  expect(await revokeStatements(alice, "tablet")).toBe(one);
  for (const convoId of many) {
    expect(await membershipEvents(db, convoId)).toContainEqual({
      type: "deviceRevoked",
      did: alice,
      deviceId: "tablet",
      actor: alice,
      epoch: 0,
    });
  }
});

it("wakes the live streams of the conversations holding the device", async () => {
  const [alice, bob] = [unique("did:plc:alice"), unique("did:plc:bob")];
  expect((await xrpc(app, alice, "registerDevice", { body: { deviceId: "phone" } })).status).toBe(200);
  const convos = await convosHolding(alice, "phone", 2, bob);
  const [last] = await db.query<{ seq: number }>(`SELECT max(seq)::int AS seq FROM events WHERE convo_id = $1`, [
    convos[1],
  ]);
  const bobs = await stream(app, bob, { convoId: convos[1]!, cursor: last!.seq });
  try {
    await revokeStatements(alice, "phone");
    const next = await Promise.race([
      bobs.events!.nextParsed(),
      new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 10_000)),
    ]);
    expect(next).toMatchObject({ event: "membership", data: { type: "deviceRevoked", did: alice, deviceId: "phone" } });
  } finally {
    await bobs.close();
  }
}, 20_000);
