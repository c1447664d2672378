/**
 * External joins through processCommit (real ts-mls external commits: PublicMessages from a new_member_commit
 * sender): a new device of an active member DID, a resync with the device's own signature key, the cooldown, and
 * everything refused.
 */
import { afterAll, describe, expect, it } from "vitest";
import { ManualClock } from "../../src/clock.js";
import { testApp, testDatabase } from "../helpers/context.js";
import { b64 } from "../helpers/rosterGroup.js";
import { expectReply, Xrpc } from "../messaging/client.js";
import {
  bundleBody,
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
const api = new Xrpc(testApp(db, { REJOIN_COOLDOWN_SECONDS: "60" }, clock).app);

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
    const info = await api.get(bob, "getGroupInfo", { convoId });
    expectReply(info, 200);
    expect(info.body).toMatchObject({ convoId, epoch: 1 });
    expect(info.body.groupInfo.$bytes).toBe(b64(await group.groupInfo(device(alice, "phone"))));
    const bundle = await group.externalJoin(bobTablet);
    const reply = await commitBundle(api, convoId, bundle, bobTablet);
    expectReply(reply, 200);
    expect(reply.body).toEqual({ newEpoch: 2, seq: 1, added: [bobTablet], removed: [] });
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
    const sent = await api.post(bob, "sendMessage", {
      convoId,
      ciphertext: b64(message),
      epoch: 2,
      deviceId: "tablet",
    });
    expectReply(sent, 200);
  });

  it("a resync keeps the signature key and counts as removed and added; once per device per cooldown (429)", async () => {
    const { bob, bobTablet, group, convoId } = await aliceAndBob();
    expectReply(await commitBundle(api, convoId, await group.externalJoin(bobTablet), bobTablet), 200);
    const resync = await group.externalJoin(bobTablet, { resync: true });
    const refused = await api.post(bob, "processCommit", bundleBody(convoId, resync, bobTablet));
    expectReply(refused, 429, "RejoinCooldown");
    expect(Number(refused.headers.get("Retry-After"))).toBeGreaterThan(0);
    expect(Number(refused.headers.get("Retry-After"))).toBeLessThanOrEqual(60);
    clock.advance(61_000);
    const reply = await commitBundle(api, convoId, resync, bobTablet);
    expectReply(reply, 200);
    expect(reply.body).toMatchObject({ newEpoch: 3, added: [bobTablet], removed: [bobTablet] });
    await expectRosterOf(db, convoId, group);
    // Another device's cooldown is its own.
    const phoneResync = await group.externalJoin(device(bob, "phone"), { resync: true });
    expectReply(await commitBundle(api, convoId, phoneResync, device(bob, "phone")), 200);
  });

  it("a RejoinCooldown is not stored under the idempotency key: the same key after the cooldown joins", async () => {
    const { bob, bobTablet, group, convoId } = await aliceAndBob();
    expectReply(await commitBundle(api, convoId, await group.externalJoin(bobTablet), bobTablet), 200);
    const resync = await group.externalJoin(bobTablet, { resync: true });
    const body = { ...bundleBody(convoId, resync, bobTablet), idempotencyKey: "resync-1" };
    expectReply(await api.post(bob, "processCommit", body), 429, "RejoinCooldown");
    clock.advance(61_000);
    const reply = await api.post(bob, "processCommit", body);
    expectReply(reply, 200);
    expect(reply.headers.get("Idempotent-Replayed")).toBeNull();
    // From now on the key answers what it did.
    const again = await api.post(bob, "processCommit", body);
    expectReply(again, 200);
    expect(again.headers.get("Idempotent-Replayed")).toBe("true");
  });

  it("a DID that is not an active member never joins externally (403 NotMember)", async () => {
    const { bob, group, convoId } = await aliceAndBob();
    const eve = newDid("eve");
    await register(db, device(eve, "phone"));
    const bundle = await group.externalJoin(device(eve, "phone"));
    expectReply(
      await api.post(eve, "processCommit", bundleBody(convoId, bundle, device(eve, "phone"))),
      403,
      "NotMember",
    );
    expectReply(await api.post(bob, "leaveConvo", { convoId }), 200);
    const afterLeaving = await group.externalJoin(device(bob, "tablet"));
    const reply = await api.post(bob, "processCommit", bundleBody(convoId, afterLeaving, device(bob, "tablet")));
    expectReply(reply, 403, "NotMember");
  });

  it("an unregistered or revoked joining device: 403 UnknownDevice / DeviceRevoked", async () => {
    const { bob, group, convoId } = await aliceAndBob();
    const ghost = await group.externalJoin(device(bob, "ghost"));
    expectReply(
      await api.post(bob, "processCommit", bundleBody(convoId, ghost, device(bob, "ghost"))),
      403,
      "UnknownDevice",
    );
    await revoke(db, device(bob, "tablet"));
    const revoked = await group.externalJoin(device(bob, "tablet"));
    expectReply(
      await api.post(bob, "processCommit", bundleBody(convoId, revoked, device(bob, "tablet"))),
      403,
      "DeviceRevoked",
    );
  });

  it("the new leaf must be the acting device's, and a device already in the tree may not join again with a new key", async () => {
    const { bob, bobTablet, group, convoId } = await aliceAndBob();
    const bundle = await group.externalJoin(bobTablet);
    // The tablet's join sent as Bob's phone: the GroupInfo is signed by the new leaf, not the phone's.
    const asPhone = await api.post(bob, "processCommit", bundleBody(convoId, bundle, device(bob, "phone")));
    expectReply(asPhone, 400, "InvalidGroupInfo");
    // Bob's phone joining as a new leaf (without resync) leaves its old leaf: the tree holds it twice.
    const twice = await group.externalJoin(device(bob, "phone"));
    const reply = await api.post(bob, "processCommit", bundleBody(convoId, twice, device(bob, "phone")));
    expectReply(reply, 400, "RosterMismatch");
    expect(await epochOf(db, convoId)).toBe(1);
  });

  it("an external commit takes no Welcome and no keyPackageHashes, and does not go through addMembers", async () => {
    const { bob, bobTablet, group, convoId } = await aliceAndBob();
    const bundle = await group.externalJoin(bobTablet);
    const withHashes = { ...bundleBody(convoId, bundle, bobTablet), keyPackageHashes: [] };
    expectReply(await api.post(bob, "processCommit", withHashes), 400, "InvalidRequest");
    const viaAddMembers = await api.post(bob, "addMembers", {
      convoId,
      didList: [bob],
      commit: b64(bundle.commit),
      groupInfo: b64(bundle.groupInfo),
      deviceId: "tablet",
    });
    expectReply(viaAddMembers, 400, "InvalidCommit");
  });

  it("competes for the epoch like any commit: a member's commit first makes the external one 409", async () => {
    const { alice, bob, bobTablet, group, convoId } = await aliceAndBob();
    const external = await group.externalJoin(bobTablet);
    expectReply(
      await commitBundle(api, convoId, await group.commit(device(alice, "phone")), device(alice, "phone")),
      200,
    );
    const reply = await api.post(bob, "processCommit", bundleBody(convoId, external, bobTablet));
    expectReply(reply, 409, "EpochMismatch");
    // The refused join started no cooldown: a fresh one goes through at once.
    expectReply(await commitBundle(api, convoId, await group.externalJoin(bobTablet), bobTablet), 200);
  });
});
