/**
 * addMembers and leaveConvo in roster-checked conversations: with a commit they are processCommit with the DID-level
 * checks of didList / targetDid (and need the GroupInfo); leaving by oneself without a commit leaves at once.
 */
import { afterAll, describe, expect, it } from "vitest";
import { randomGroupId, testApp, testDatabase } from "../helpers/context.js";
import { RosterGroup, SUITE } from "../helpers/rosterGroup.js";
import { Api, expectOutcome, messageOf } from "../messaging/client.js";
import {
  activeMembers,
  bundleFields,
  device,
  epochOf,
  expectRosterOf,
  liveWelcomes,
  membershipEvents,
  newDid,
  register,
  rosterConvo,
  storedRoster,
} from "./fixtures.js";

const db = testDatabase();
afterAll(() => db.close());
const api = new Api(testApp(db).app);

/** Alice (creator, phone), Bob (phone, laptop) and Carol (implicit device). */
async function threeMembers() {
  const alice = newDid("alice");
  const bob = newDid("bob");
  const carol = newDid("carol");
  await register(db, device(alice, "phone"), device(bob, "phone"), device(bob, "laptop"));
  const { group, convoId } = await rosterConvo(api, device(alice, "phone"), [
    device(bob, "phone"),
    device(bob, "laptop"),
    device(carol),
  ]);
  return { alice, bob, carol, group, convoId };
}

describe("addMembers in a roster-checked conversation", () => {
  it("with a commit and its GroupInfo: the DIDs of didList gain devices; a repeat answers the same", async () => {
    const { alice, bob, group, convoId } = await threeMembers();
    const dave = newDid("dave");
    await register(db, device(dave, "phone"), device(bob, "tablet"));
    const bundle = await group.commit(device(alice, "phone"), { add: [device(dave, "phone"), device(bob, "tablet")] });
    const body = { convoId, didList: [dave, bob], ...bundleFields(bundle, device(alice, "phone")) };
    const reply = await api.call(alice, "addMembers", body);
    expectOutcome(reply, 200);
    expect(reply.data).toEqual({ success: true, newEpoch: 2 });
    await bundle.apply();
    await expectRosterOf(db, convoId, group);
    expect(await activeMembers(db, convoId)).toContain(dave);
    expect(await api.call(alice, "addMembers", body)).toMatchObject({
      status: 200,
      data: { success: true, newEpoch: 2 },
    });
  });

  it("didList that disagrees with the DIDs gaining devices, or a commit that removes: RosterMismatch", async () => {
    const { alice, bob, carol, group, convoId } = await threeMembers();
    const dave = newDid("dave");
    await register(db, device(dave, "phone"));
    const adding = await group.commit(device(alice, "phone"), { add: [device(dave, "phone")] });
    for (const didList of [[bob], [dave, bob]]) {
      const reply = await api.call(alice, "addMembers", {
        convoId,
        didList,
        ...bundleFields(adding, device(alice, "phone")),
      });
      expectOutcome(reply, 400, "RosterMismatch");
    }
    const removing = await group.commit(device(alice, "phone"), {
      add: [device(dave, "phone")],
      remove: [device(carol)],
    });
    const reply = await api.call(alice, "addMembers", {
      convoId,
      didList: [dave],
      ...bundleFields(removing, device(alice, "phone")),
    });
    expectOutcome(reply, 400, "RosterMismatch");
    expect(await epochOf(db, convoId)).toBe(1);
  });

  it("without a GroupInfo: 400 InvalidRequest, with or without a commit", async () => {
    const { alice, group, convoId } = await threeMembers();
    const dave = newDid("dave");
    expectOutcome(await api.call(alice, "addMembers", { convoId, didList: [dave] }), 400, "InvalidRequest");
    const bundle = await group.commit(device(alice, "phone"), { add: [device(dave)] });
    const { groupInfo: _, ...withoutGroupInfo } = bundleFields(bundle, device(alice, "phone"));
    const reply = await api.call(alice, "addMembers", { convoId, didList: [dave], ...withoutGroupInfo });
    expectOutcome(reply, 400, "InvalidRequest");
    expect(messageOf(reply)).toMatch(/groupInfo/);
  });

  it("a GroupInfo in a conversation that is not roster-checked, or without a commit: 400 InvalidRequest", async () => {
    const alice = newDid("alice");
    const group = await RosterGroup.create(device(alice));
    const created = await api.call(alice, "createConvo", { groupId: group.groupIdHex, cipherSuite: SUITE });
    const dave = newDid("dave");
    const bundle = await group.commit(device(alice), { add: [device(dave)] });
    const convoId = created.data!.id;
    expectOutcome(
      await api.call(alice, "addMembers", { convoId, didList: [dave], ...bundleFields(bundle, device(alice)) }),
      400,
      "InvalidRequest",
    );
    const { commit: _, ...withoutCommit } = bundleFields(bundle, device(alice));
    expectOutcome(
      await api.call(alice, "addMembers", { convoId, didList: [dave], ...withoutCommit }),
      400,
      "InvalidRequest",
    );
  });
});

describe("leaveConvo in a roster-checked conversation", () => {
  it("the creator removes a DID with a commit removing all its devices", async () => {
    const { alice, bob, carol, group, convoId } = await threeMembers();
    const bundle = await group.commit(device(alice, "phone"), {
      remove: [device(bob, "phone"), device(bob, "laptop")],
    });
    const reply = await api.call(alice, "leaveConvo", {
      convoId,
      targetDid: bob,
      ...bundleFields(bundle, device(alice, "phone")),
    });
    expectOutcome(reply, 200);
    expect(reply.data).toEqual({ success: true, newEpoch: 2 });
    await bundle.apply();
    expect(await activeMembers(db, convoId)).toEqual([alice, carol].sort());
    await expectRosterOf(db, convoId, group);
    expect((await membershipEvents(db, convoId)).slice(-3).map((event) => event.type)).toEqual([
      "deviceRemoved",
      "deviceRemoved",
      "removed",
    ]);
  });

  it("a commit that leaves one of the target's devices, or removes someone else too: RosterMismatch", async () => {
    const { alice, bob, carol, group, convoId } = await threeMembers();
    const partial = await group.commit(device(alice, "phone"), { remove: [device(bob, "phone")] });
    const body = { convoId, targetDid: bob, ...bundleFields(partial, device(alice, "phone")) };
    expectOutcome(await api.call(alice, "leaveConvo", body), 400, "RosterMismatch");
    const more = await group.commit(device(alice, "phone"), {
      remove: [device(bob, "phone"), device(bob, "laptop"), device(carol)],
    });
    const reply = await api.call(alice, "leaveConvo", {
      convoId,
      targetDid: bob,
      ...bundleFields(more, device(alice, "phone")),
    });
    expectOutcome(reply, 400, "RosterMismatch");
  });

  it("a member who is not the creator may not remove an active DID (403 NotCreator)", async () => {
    const { bob, carol, group, convoId } = await threeMembers();
    const bundle = await group.commit(device(carol), { remove: [device(bob, "phone"), device(bob, "laptop")] });
    const reply = await api.call(carol, "leaveConvo", {
      convoId,
      targetDid: bob,
      ...bundleFields(bundle, device(carol)),
    });
    expectOutcome(reply, 403, "NotCreator");
  });

  it("leaving by oneself without a commit leaves at once; the leaves stay until any member commits their removal", async () => {
    const { alice, bob, carol, group, convoId } = await threeMembers();
    const rosterBefore = await storedRoster(db, convoId);
    const left = await api.call(bob, "leaveConvo", { convoId });
    expectOutcome(left, 200);
    expect(left.data).toEqual({ success: true, newEpoch: 1 });
    expect(await activeMembers(db, convoId)).toEqual([alice, carol].sort());
    expect(await storedRoster(db, convoId)).toEqual(rosterBefore);
    expect(await liveWelcomes(db, convoId)).toEqual([carol]); // both of Bob's devices' welcomes retired
    expectOutcome(await api.call(bob, "getMessages", { convoId }), 403, "NotMember");
    expectOutcome(await api.call(bob, "getGroupInfo", { convoId }), 403, "NotMember");
    expectOutcome(await api.call(bob, "leaveConvo", { convoId }), 200); // leaving twice leaves once

    // Carol, not the creator, removes the leaves of a DID that has left.
    const bundle = await group.commit(device(carol), { remove: [device(bob, "phone"), device(bob, "laptop")] });
    const reply = await api.call(carol, "leaveConvo", {
      convoId,
      targetDid: bob,
      ...bundleFields(bundle, device(carol)),
    });
    expectOutcome(reply, 200);
    await bundle.apply();
    await expectRosterOf(db, convoId, group);
    const types = (await membershipEvents(db, convoId)).filter((event) => event.did === bob).map((event) => event.type);
    expect(types).toEqual(["joined", "deviceAdded", "deviceAdded", "left", "deviceRemoved", "deviceRemoved"]);
  });

  it("removing someone else without a commit, or committing without the GroupInfo: 400 InvalidRequest", async () => {
    const { alice, bob, group, convoId } = await threeMembers();
    expectOutcome(await api.call(alice, "leaveConvo", { convoId, targetDid: bob }), 400, "InvalidRequest");
    const bundle = await group.commit(device(alice, "phone"), {
      remove: [device(bob, "phone"), device(bob, "laptop")],
    });
    const { groupInfo: _, ...withoutGroupInfo } = bundleFields(bundle, device(alice, "phone"));
    const reply = await api.call(alice, "leaveConvo", { convoId, targetDid: bob, ...withoutGroupInfo });
    expectOutcome(reply, 400, "InvalidRequest");
    expect(await activeMembers(db, convoId)).toContain(bob);
  });
});

describe("the DID-level methods in conversations that are not roster-checked", () => {
  it("keep working as before, deviceId entries in keyPackageHashes included", async () => {
    const alice = newDid("alice");
    const bob = newDid("bob");
    const created = await api.call(alice, "createConvo", { groupId: randomGroupId(), cipherSuite: SUITE });
    expectOutcome(created, 200);
    const keyPackageHashes = [{ did: bob, deviceId: "phone", hash: "a".repeat(64) }];
    const reply = await api.call(alice, "addMembers", { convoId: created.data!.id, didList: [bob], keyPackageHashes });
    expectOutcome(reply, 200);
    expect(reply.data).toEqual({ success: true, newEpoch: 0 });
    expectOutcome(await api.call(alice, "leaveConvo", { convoId: created.data!.id, targetDid: bob }), 200);
  });
});
