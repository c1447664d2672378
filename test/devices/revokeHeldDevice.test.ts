/**
 * revokeDevice for a device many conversations hold: anyone who can add the device (its last-resort package serves
 * every adder) can put it into as many conversations as they create, and the revocation must still go through in
 * one short transaction. Its deviceRevoked events reach live streams at once, like any change a request makes.
 */
import { afterAll, expect, it } from "vitest";
import { randomGroupId, testApp, testDatabase, unique } from "../helpers/context.js";
import { withStatementHook } from "../helpers/faults.js";
import { Api, checkedFetch, expectOutcome, ok } from "../messaging/client.js";
import { insertRoster, membershipEvents, SUITE } from "./rows.js";

const db = testDatabase();
afterAll(() => db.close());

let statements = 0;
const counted = withStatementHook(db, async () => void statements++);
// No stream reads again until something wakes it: a deviceRevoked event must be announced to reach it.
const { app } = testApp(counted, { EVENTS_POLL_MS: "600000", EVENTS_SAFETY_POLL_MS: "600000" });
const api = new Api(app);

async function convosHolding(did: string, deviceId: string, count: number, member: string): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    const created = await ok(
      api.as(member).createConvo({ groupId: randomGroupId(), cipherSuite: SUITE, initialMembers: [did] }),
    );
    await insertRoster(db, created.data.id, [
      { did: member, deviceId: "" },
      { did, deviceId },
    ]);
    ids.push(created.data.id);
  }
  return ids;
}

/** Statements revokeDevice runs to revoke `did`'s `deviceId`. */
async function revokeStatements(did: string, deviceId: string): Promise<number> {
  const before = statements;
  const answer = await api.call(did, "revokeDevice", { deviceId });
  expect([answer.status, answer.data]).toEqual([200, { revoked: true }]);
  return statements - before;
}

it("takes as many statements for a device 24 conversations hold as for one one holds, and posts deviceRevoked in each", async () => {
  const [alice, bob] = [unique("did:plc:alice"), unique("did:plc:bob")];
  for (const deviceId of ["phone", "tablet"]) {
    expectOutcome(await api.call(alice, "registerDevice", { deviceId }), 200);
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
  expectOutcome(await api.call(alice, "registerDevice", { deviceId: "phone" }), 200);
  const convos = await convosHolding(alice, "phone", 2, bob);
  const [last] = await db.query<{ seq: number }>(`SELECT max(seq)::int AS seq FROM events WHERE convo_id = $1`, [
    convos[1],
  ]);
  // Bob's stream, known to be open (its answer came) before the revocation.
  let streamOpen!: () => void;
  const opened = new Promise<void>((resolve) => (streamOpen = resolve));
  const checked = checkedFetch(app);
  const watching = new Api(app, {
    fetch: async (request) => {
      const response = await checked(request);
      if (new URL(request.url).pathname.endsWith(".streamConvoEvents")) streamOpen();
      return response;
    },
  });
  const stop = new AbortController();
  const events = watching.as(bob).streamConvoEvents({ convoId: convos[1]!, cursor: last!.seq }, stop.signal);
  try {
    const first = events.next();
    await opened;
    await revokeStatements(alice, "phone");
    const next = await Promise.race([
      first.then((result) => result.value),
      new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 10_000)),
    ]);
    expect(next).toMatchObject({ type: "membership", data: { type: "deviceRevoked", did: alice, deviceId: "phone" } });
  } finally {
    stop.abort();
    await events.return(undefined);
  }
}, 20_000);
