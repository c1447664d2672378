/**
 * createConvo with a GroupInfo: a roster-checked conversation whose roster, members, welcomes and events come from
 * the GroupInfo's tree; every disagreement between the tree and the request is RosterMismatch.
 */
import { afterAll, describe, expect, it } from "vitest";
import { testApp, testDatabase } from "../helpers/context.js";
import { RosterGroup, SUITE } from "../helpers/rosterGroup.js";
import { Api, expectOutcome, messageOf, randomBytes } from "../messaging/client.js";
import {
  activeMembers,
  device,
  epochOf,
  expectRosterOf,
  liveWelcomes,
  membershipEvents,
  newDid,
  newGroup,
  register,
  rosterConvo,
} from "./fixtures.js";

const db = testDatabase();
afterAll(() => db.close());
const api = new Api(testApp(db).app);

/** A group by Alice's phone that added Alice's laptop and Bob's two devices, not yet on the server. */
async function prepared() {
  const alice = newDid("alice");
  const bob = newDid("bob");
  const alicePhone = device(alice, "phone");
  const others = [device(alice, "laptop"), device(bob, "phone"), device(bob, "tablet")];
  await register(db, alicePhone, ...others);
  const group = await newGroup(api, alicePhone);
  const bundle = await group.commit(alicePhone, { add: others });
  await bundle.apply();
  const body = {
    groupId: group.groupIdHex,
    cipherSuite: SUITE,
    groupInfo: await group.groupInfo(alicePhone),
    deviceId: "phone",
    welcomeMessage: bundle.welcome!,
    keyPackageHashes: bundle.keyPackageHashes,
  };
  return { alice, bob, alicePhone, group, bundle, body };
}

describe("createConvo with groupInfo", () => {
  it("starts at the GroupInfo's epoch with the tree as roster, its DIDs as members, a welcome per other device", async () => {
    const { alice, bob, group, body } = await prepared();
    const reply = await api.call(alice, "createConvo", { ...body, initialMembers: [bob] });
    expectOutcome(reply, 200);
    const convoId = reply.data!.id;
    expect(reply.data).toMatchObject({ groupId: group.groupIdHex, creator: alice, epoch: 1 });
    expect(reply.data!.members.map((member: { did: string }) => member.did).sort()).toEqual([alice, bob].sort());
    expect(await epochOf(db, convoId)).toBe(1);
    await expectRosterOf(db, convoId, group);
    expect(await activeMembers(db, convoId)).toEqual([alice, bob].sort());
    expect(await liveWelcomes(db, convoId)).toEqual([`${alice}#laptop`, `${bob}#phone`, `${bob}#tablet`].sort());
    const [stored] = await db.query<{ roster_checked: boolean; epoch: number; group_info: Uint8Array }>(
      `SELECT c.roster_checked, g.epoch, g.group_info FROM conversations c JOIN group_infos g ON g.convo_id = c.id WHERE c.id = $1`,
      [convoId],
    );
    expect(stored!.roster_checked).toBe(true);
    expect(Number(stored!.epoch)).toBe(1);
    expect(new Uint8Array(stored!.group_info)).toEqual(body.groupInfo);
    const actor = { actor: alice, actorDevice: "phone", epoch: 1 };
    expect(await membershipEvents(db, convoId)).toEqual([
      { type: "joined", did: alice, ...actor },
      { type: "deviceAdded", did: alice, deviceId: "phone", ...actor },
      { type: "deviceAdded", did: alice, deviceId: "laptop", ...actor },
      { type: "joined", did: bob, ...actor },
      { type: "deviceAdded", did: bob, deviceId: "phone", ...actor },
      { type: "deviceAdded", did: bob, deviceId: "tablet", ...actor },
    ]);
    const hashes = await db.query<{ recipient_device: string; key_package_hash: string }>(
      `SELECT recipient_device, key_package_hash FROM welcome_messages WHERE convo_id = $1 AND recipient_did = $2 ORDER BY recipient_device`,
      [convoId, bob],
    );
    expect(hashes.map((row) => row.key_package_hash)).toEqual(
      body.keyPackageHashes.filter((entry) => entry.did === bob).map((entry) => entry.hash),
    );
  });

  it("a repeat by its creator answers the conversation; anyone else gets 409 ConvoExists", async () => {
    const { alice, bob, group, body } = await prepared();
    const first = await api.call(alice, "createConvo", body);
    expectOutcome(first, 200);
    const again = await api.call(alice, "createConvo", body);
    expectOutcome(again, 200);
    expect(again.data!.id).toBe(first.data!.id);
    // Bob's own valid GroupInfo for the same group (his phone signs it): the group id is taken.
    const bobs = { ...body, deviceId: "phone", groupInfo: await group.groupInfo(device(bob, "phone")) };
    delete (bobs as { welcomeMessage?: unknown }).welcomeMessage;
    delete (bobs as { keyPackageHashes?: unknown }).keyPackageHashes;
    expectOutcome(await api.call(bob, "createConvo", bobs), 409, "ConvoExists");
  });

  it("initialMembers that disagree with the tree's DIDs: RosterMismatch", async () => {
    const { alice, bob, body } = await prepared();
    for (const initialMembers of [[], [newDid("carol")], [bob, newDid("carol")]]) {
      expectOutcome(await api.call(alice, "createConvo", { ...body, initialMembers }), 400, "RosterMismatch");
    }
  });

  it("a tree without the caller's acting device (RosterMismatch), or signed by another device (InvalidGroupInfo)", async () => {
    const { alice, bob, group, body } = await prepared();
    expectOutcome(await api.call(alice, "createConvo", { ...body, deviceId: undefined }), 400, "RosterMismatch");
    expectOutcome(await api.call(alice, "createConvo", { ...body, deviceId: "laptop" }), 400, "InvalidGroupInfo");
    const signedByBob = await group.groupInfo(device(bob, "phone"));
    expectOutcome(await api.call(alice, "createConvo", { ...body, groupInfo: signedByBob }), 400, "InvalidGroupInfo");
  });

  it("a groupId other than the GroupInfo's: InvalidGroupInfo", async () => {
    const { alice, body } = await prepared();
    const other = (await RosterGroup.create(device(alice))).groupIdHex;
    expectOutcome(await api.call(alice, "createConvo", { ...body, groupId: other }), 400, "InvalidGroupInfo");
  });

  it("a tree with an unregistered or revoked device: RosterMismatch", async () => {
    const alice = newDid("alice");
    await register(db, device(alice, "phone"), { ...device(alice, "old"), revoked: true });
    for (const other of [device(newDid("bob"), "ghost"), device(alice, "old")]) {
      const group = await newGroup(api, device(alice, "phone"));
      const bundle = await group.commit(device(alice, "phone"), { add: [other] });
      await bundle.apply();
      const reply = await api.call(alice, "createConvo", {
        groupId: group.groupIdHex,
        cipherSuite: SUITE,
        groupInfo: await group.groupInfo(device(alice, "phone")),
        deviceId: "phone",
      });
      expectOutcome(reply, 400, "RosterMismatch");
    }
  });

  it("a tree with a leaf whose key no key package of its device carries: RosterMismatch", async () => {
    const alice = newDid("alice");
    const bob = newDid("bob");
    await register(db, device(alice, "phone"), device(bob, "phone"));
    const group = await RosterGroup.create(device(alice, "phone")); // publishes nothing
    const bundle = await group.commit(device(alice, "phone"), { add: [device(bob, "phone")] });
    await bundle.apply();
    const reply = await api.call(alice, "createConvo", {
      groupId: group.groupIdHex,
      cipherSuite: SUITE,
      groupInfo: await group.groupInfo(device(alice, "phone")),
      deviceId: "phone",
      welcomeMessage: bundle.welcome!,
    });
    expectOutcome(reply, 400, "RosterMismatch");
    expect(messageOf(reply)).toMatch(/key package/);
  });

  it("keyPackageHashes that do not name exactly the welcomed devices: RosterMismatch", async () => {
    const { alice, body } = await prepared();
    const [first, ...rest] = body.keyPackageHashes;
    expectOutcome(await api.call(alice, "createConvo", { ...body, keyPackageHashes: rest }), 400, "RosterMismatch");
    const self = { did: alice, deviceId: "phone", hash: first!.hash };
    expectOutcome(
      await api.call(alice, "createConvo", { ...body, keyPackageHashes: [...body.keyPackageHashes, self] }),
      400,
      "RosterMismatch",
    );
  });

  it("the acting device must be registered and live: 403 UnknownDevice / DeviceRevoked", async () => {
    const { alice, body } = await prepared();
    expectOutcome(await api.call(alice, "createConvo", { ...body, deviceId: "nope" }), 403, "UnknownDevice");
    await db.query(`UPDATE devices SET revoked_at = now() WHERE did = $1 AND device_id = 'phone'`, [alice]);
    expectOutcome(await api.call(alice, "createConvo", body), 403, "DeviceRevoked");
  });

  it("bytes that are no valid GroupInfo: 400 InvalidGroupInfo; a Welcome with no one to welcome: 400", async () => {
    const { alice, bundle, body } = await prepared();
    for (const groupInfo of [randomBytes(64), bundle.commit, body.welcomeMessage]) {
      expectOutcome(await api.call(alice, "createConvo", { ...body, groupInfo }), 400, "InvalidGroupInfo");
    }
    const solo = await RosterGroup.create(device(alice, "phone"));
    const reply = await api.call(alice, "createConvo", {
      groupId: solo.groupIdHex,
      cipherSuite: SUITE,
      groupInfo: await solo.groupInfo(device(alice, "phone")),
      deviceId: "phone",
      welcomeMessage: body.welcomeMessage,
    });
    expectOutcome(reply, 400, "InvalidRequest");
  });

  it("a one-device creator with the implicit device makes a roster-checked conversation of one", async () => {
    const alice = newDid("alice");
    const { convoId, reply } = await rosterConvo(api, device(alice));
    expect(reply.data!.epoch).toBe(0);
    expect(await activeMembers(db, convoId)).toEqual([alice]);
  });
});
