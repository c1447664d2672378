/**
 * External joins through processCommit (real ts-mls external commits: PublicMessages from a new_member_commit
 * sender): a new device of an active member DID, a resync with the device's own signature key, the cooldown, and
 * everything refused.
 */
import { afterAll, describe, expect, it } from "vitest";
import { ManualClock } from "../../src/clock.js";
import { testApp, testDatabase } from "../helpers/context.js";
import { answerOf, Api, expectOutcome, refusalOf } from "../messaging/client.js";
import {
  bundleInput,
  commitBundle,
  device,
  epochOf,
  expectRosterOf,
  membershipEvents,
  newDid,
  register,
  revoke,
  rosterConvo,
} from "./fixtures.js";

const db = testDatabase();
afterAll(() => db.close());
const clock = new ManualClock();
const api = new Api(testApp(db, { REJOIN_COOLDOWN_SECONDS: "60" }, clock).app);

async function aliceAndBob() {
  const alice = newDid("alice");
  const bob = newDid("bob");
  await register(db, device(alice, "phone"), device(bob, "phone"), device(bob, "tablet"));
  const { group, convoId } = await rosterConvo(api, device(alice, "phone"), [device(bob, "phone")]);
  return { alice, bob, group, convoId, bobTablet: device(bob, "tablet") };
}

describe("external joins", () => {
  it("a new device of a member joins from getGroupInfo's GroupInfo; it can then send", async () => {
    const { alice, bob, bobTablet, group, convoId } = await aliceAndBob();
    const info = await api.call(bob, "getGroupInfo", { convoId });
    expectOutcome(info, 200);
    expect(info.data).toMatchObject({ convoId, epoch: 1 });
    expect(info.data!.groupInfo).toEqual(new Uint8Array(await group.groupInfo(device(alice, "phone"))));
    const bundle = await group.externalJoin(bobTablet);
    const reply = await commitBundle(api, convoId, bundle, bobTablet);
    expectOutcome(reply, 200);
    expect(reply.data).toEqual({ newEpoch: 2, seq: 1, added: [bobTablet], removed: [] });
    await expectRosterOf(db, convoId, group);
    expect((await membershipEvents(db, convoId)).at(-1)).toEqual({
      type: "deviceAdded",
      did: bob,
      deviceId: "tablet",
      actor: bob,
      actorDevice: "tablet",
      epoch: 2,
    });
    const message = await group.application(bobTablet, "hello from the tablet");
    const sent = await api.call(bob, "sendMessage", {
      convoId,
      ciphertext: message,
      epoch: 2,
      deviceId: "tablet",
    });
    expectOutcome(sent, 200);
  });

  it("a resync keeps the signature key and counts as removed and added; once per device per cooldown (429)", async () => {
    const { bob, bobTablet, group, convoId } = await aliceAndBob();
    expectOutcome(await commitBundle(api, convoId, await group.externalJoin(bobTablet), bobTablet), 200);
    const resync = await group.externalJoin(bobTablet, { resync: true });
    const refused = await api.call(bob, "processCommit", bundleInput(convoId, resync, bobTablet));
    expectOutcome(refused, 429, "RejoinCooldown");
    expect(refusalOf(refused).retryAfter).toBeGreaterThan(0);
    expect(refusalOf(refused).retryAfter).toBeLessThanOrEqual(60);
    clock.advance(61_000);
    const reply = await commitBundle(api, convoId, resync, bobTablet);
    expectOutcome(reply, 200);
    expect(reply.data).toMatchObject({ newEpoch: 3, added: [bobTablet], removed: [bobTablet] });
    await expectRosterOf(db, convoId, group);
    // Another device's cooldown is its own.
    const phoneResync = await group.externalJoin(device(bob, "phone"), { resync: true });
    expectOutcome(await commitBundle(api, convoId, phoneResync, device(bob, "phone")), 200);
  });

  it("a RejoinCooldown is not stored under the idempotency key: the same key after the cooldown joins", async () => {
    const { bob, bobTablet, group, convoId } = await aliceAndBob();
    expectOutcome(await commitBundle(api, convoId, await group.externalJoin(bobTablet), bobTablet), 200);
    const resync = await group.externalJoin(bobTablet, { resync: true });
    const body = { ...bundleInput(convoId, resync, bobTablet), idempotencyKey: "resync-1" };
    expectOutcome(await api.call(bob, "processCommit", body), 429, "RejoinCooldown");
    clock.advance(61_000);
    const reply = await api.call(bob, "processCommit", body);
    expectOutcome(reply, 200);
    expect(answerOf(reply).replayed).toBe(false);
    // From now on the key answers what it did.
    const again = await api.call(bob, "processCommit", body);
    expectOutcome(again, 200);
    expect(answerOf(again).replayed).toBe(true);
  });

  it("a DID that is not an active member never joins externally (403 NotMember)", async () => {
    const { bob, group, convoId } = await aliceAndBob();
    const eve = newDid("eve");
    await register(db, device(eve, "phone"));
    const bundle = await group.externalJoin(device(eve, "phone"));
    expectOutcome(
      await api.call(eve, "processCommit", bundleInput(convoId, bundle, device(eve, "phone"))),
      403,
      "NotMember",
    );
    expectOutcome(await api.call(bob, "leaveConvo", { convoId }), 200);
    const afterLeaving = await group.externalJoin(device(bob, "tablet"));
    const reply = await api.call(bob, "processCommit", bundleInput(convoId, afterLeaving, device(bob, "tablet")));
    expectOutcome(reply, 403, "NotMember");
  });

  it("an unregistered or revoked joining device: 403 UnknownDevice / DeviceRevoked", async () => {
    const { bob, group, convoId } = await aliceAndBob();
    const ghost = await group.externalJoin(device(bob, "ghost"));
    expectOutcome(
      await api.call(bob, "processCommit", bundleInput(convoId, ghost, device(bob, "ghost"))),
      403,
      "UnknownDevice",
    );
    await revoke(db, device(bob, "tablet"));
    const revoked = await group.externalJoin(device(bob, "tablet"));
    expectOutcome(
      await api.call(bob, "processCommit", bundleInput(convoId, revoked, device(bob, "tablet"))),
      403,
      "DeviceRevoked",
    );
  });

  it("the new leaf must be the acting device's, and a device already in the tree may not join again with a new key", async () => {
    const { bob, bobTablet, group, convoId } = await aliceAndBob();
    const bundle = await group.externalJoin(bobTablet);
    // The tablet's join sent as Bob's phone: the GroupInfo is signed by the new leaf, not the phone's.
    const asPhone = await api.call(bob, "processCommit", bundleInput(convoId, bundle, device(bob, "phone")));
    expectOutcome(asPhone, 400, "InvalidGroupInfo");
    // Bob's phone joining as a new leaf (without resync) leaves its old leaf: the tree holds it twice.
    const twice = await group.externalJoin(device(bob, "phone"));
    const reply = await api.call(bob, "processCommit", bundleInput(convoId, twice, device(bob, "phone")));
    expectOutcome(reply, 400, "RosterMismatch");
    expect(await epochOf(db, convoId)).toBe(1);
  });

  it("an external commit takes no Welcome and no keyPackageHashes, and does not go through addMembers", async () => {
    const { bob, bobTablet, group, convoId } = await aliceAndBob();
    const bundle = await group.externalJoin(bobTablet);
    const withHashes = { ...bundleInput(convoId, bundle, bobTablet), keyPackageHashes: [] };
    expectOutcome(await api.call(bob, "processCommit", withHashes), 400, "InvalidRequest");
    const viaAddMembers = await api.call(bob, "addMembers", {
      convoId,
      didList: [bob],
      commit: bundle.commit,
      groupInfo: bundle.groupInfo,
      deviceId: "tablet",
    });
    expectOutcome(viaAddMembers, 400, "InvalidCommit");
  });

  it("competes for the epoch like any commit: a member's commit first makes the external one 409", async () => {
    const { alice, bob, bobTablet, group, convoId } = await aliceAndBob();
    const external = await group.externalJoin(bobTablet);
    expectOutcome(
      await commitBundle(api, convoId, await group.commit(device(alice, "phone")), device(alice, "phone")),
      200,
    );
    const reply = await api.call(bob, "processCommit", bundleInput(convoId, external, bobTablet));
    expectOutcome(reply, 409, "EpochMismatch");
    // The refused join started no cooldown: a fresh one goes through at once.
    expectOutcome(await commitBundle(api, convoId, await group.externalJoin(bobTablet), bobTablet), 200);
  });
});
