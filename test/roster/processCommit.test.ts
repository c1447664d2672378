/**
 * processCommit in roster-checked conversations, with real ts-mls groups whose leaves are devices: the roster diff,
 * who may add and remove what, the checks on the GroupInfo and what the request declares, welcomes per device,
 * members and events, natural and keyed repeats.
 */
import { afterAll, describe, expect, it } from "vitest";
import { decodeMlsMessage, encodeMlsMessage } from "ts-mls/message.js";
import { randomGroupId, testApp, testDatabase } from "../helpers/context.js";
import { RosterGroup, SUITE } from "../helpers/rosterGroup.js";
import { Api, expectOutcome, messageOf } from "../messaging/client.js";
import {
  activeMembers,
  bundleInput,
  commitBundle,
  device,
  epochOf,
  expectRosterOf,
  liveWelcomes,
  membershipEvents,
  newDid,
  publisher,
  register,
  revoke,
  rosterConvo,
  storedRoster,
  aliceAndBob as fixtureAliceAndBob,
} from "./fixtures.js";

const db = testDatabase();
afterAll(() => db.close());
const admin = newDid("admin");
const api = new Api(testApp(db, { ADMIN_DIDS: admin }).app);

const aliceAndBob = () => fixtureAliceAndBob(db, api);

describe("processCommit: adds", () => {
  it("adds devices of two DIDs in one commit with one Welcome: a welcome row per device, joined per new DID, deviceAdded per device", async () => {
    const { alice, bob, alicePhone, group, convoId } = await aliceAndBob();
    const carol = newDid("carol");
    const bobTablet = device(bob, "tablet");
    const carolPhone = device(carol, "phone");
    const carolLaptop = device(carol, "laptop");
    await register(db, bobTablet, carolPhone, carolLaptop);
    const before = (await membershipEvents(db, convoId)).length;

    const bundle = await group.commit(alicePhone, { add: [bobTablet, carolPhone, carolLaptop] });
    const reply = await commitBundle(api, convoId, bundle, alicePhone);
    expectOutcome(reply, 200);
    expect(reply.data).toEqual({
      newEpoch: 2,
      seq: 1,
      added: [bobTablet, carolPhone, carolLaptop],
      removed: [],
    });
    await expectRosterOf(db, convoId, group);
    expect(await activeMembers(db, convoId)).toEqual([alice, bob, carol].sort());
    expect(await epochOf(db, convoId)).toBe(2);
    // createConvo's welcome rows (laptop, Bob's phone) stay; the new ones are per device.
    expect(await liveWelcomes(db, convoId)).toEqual(
      [`${alice}#laptop`, `${bob}#phone`, `${bob}#tablet`, `${carol}#laptop`, `${carol}#phone`].sort(),
    );
    // One Welcome for the three new devices, its bytes stored once.
    const [payloads] = await db.query<{ rows: number; payloads: number }>(
      `SELECT count(*) AS rows, count(DISTINCT payload_hash) AS payloads FROM welcome_messages
        WHERE convo_id = $1 AND (recipient_did = $2 OR (recipient_did = $3 AND recipient_device = 'tablet'))`,
      [convoId, carol, bob],
    );
    expect(payloads).toEqual({ rows: 3, payloads: 1 });
    const events = (await membershipEvents(db, convoId)).slice(before);
    const actor = { actor: alice, actorDevice: "phone", epoch: 2 };
    expect(events).toEqual([
      { type: "deviceAdded", did: bob, deviceId: "tablet", ...actor },
      { type: "joined", did: carol, ...actor },
      { type: "deviceAdded", did: carol, deviceId: "phone", ...actor },
      { type: "deviceAdded", did: carol, deviceId: "laptop", ...actor },
    ]);
    const [commit] = await db.query<{ sender_did: string; sender_device: string; epoch: number; seq: number }>(
      `SELECT sender_did, sender_device, epoch, seq FROM messages WHERE convo_id = $1 AND message_type = 'commit'`,
      [convoId],
    );
    expect(commit).toEqual({ sender_did: alice, sender_device: "phone", epoch: 1, seq: 1 });
    // The new devices join from the one Welcome (apply() ran joinGroup for each) and agree on the epoch.
    expect(group.epoch).toBe(2);
  });

  it("any member device may add devices of any DID (a new DID becomes a member)", async () => {
    const { bobPhone, group, convoId } = await aliceAndBob();
    const dave = newDid("dave");
    await register(db, device(dave, "phone"));
    const reply = await commitBundle(
      api,
      convoId,
      await group.commit(bobPhone, { add: [device(dave, "phone")] }),
      bobPhone,
    );
    expectOutcome(reply, 200);
    expect(await activeMembers(db, convoId)).toContain(dave);
    await expectRosterOf(db, convoId, group);
  });

  it("an implicit device (no deviceId) adds and commits like any other", async () => {
    const erin = newDid("erin");
    const frank = newDid("frank");
    const { group, convoId } = await rosterConvo(api, device(erin), [device(frank)]);
    const reply = await commitBundle(
      api,
      convoId,
      await group.commit(device(erin), { add: [device(frank, "tablet")] }),
      device(erin),
    );
    expectOutcome(reply, 400, "RosterMismatch"); // frank#tablet is not registered
    await register(db, device(frank, "tablet"));
    const again = await commitBundle(
      api,
      convoId,
      await group.commit(device(erin), { add: [device(frank, "tablet")] }),
      device(erin),
    );
    expectOutcome(again, 200);
    expect(await storedRoster(db, convoId)).toEqual([erin, frank, `${frank}#tablet`]);
  });
});

describe("processCommit: removals and who may make them", () => {
  it("a device removes its own DID's other device; the DID stays", async () => {
    const { alice, aliceLaptop, alicePhone, group, convoId } = await aliceAndBob();
    const reply = await commitBundle(
      api,
      convoId,
      await group.commit(aliceLaptop, { remove: [alicePhone] }),
      aliceLaptop,
    );
    expectOutcome(reply, 200);
    expect(reply.data!.removed).toEqual([alicePhone]);
    expect(await activeMembers(db, convoId)).toContain(alice);
    const events = await membershipEvents(db, convoId);
    expect(events.at(-1)).toMatchObject({
      type: "deviceRemoved",
      did: alice,
      deviceId: "phone",
      actorDevice: "laptop",
    });
  });

  it("a member who is not the creator may not remove another DID's live device (403 NotCreator)", async () => {
    const { aliceLaptop, bobPhone, group, convoId } = await aliceAndBob();
    const reply = await commitBundle(api, convoId, await group.commit(bobPhone, { remove: [aliceLaptop] }), bobPhone);
    expectOutcome(reply, 403, "NotCreator");
    expect(await epochOf(db, convoId)).toBe(1);
  });

  it("the creator removes another DID's last device: that DID is removed and its welcome retired", async () => {
    const { alice, bob, alicePhone, bobPhone, group, convoId } = await aliceAndBob();
    const reply = await commitBundle(api, convoId, await group.commit(alicePhone, { remove: [bobPhone] }), alicePhone);
    expectOutcome(reply, 200);
    expect(await activeMembers(db, convoId)).toEqual([alice]);
    expect(await liveWelcomes(db, convoId)).toEqual([`${alice}#laptop`]);
    expect((await membershipEvents(db, convoId)).slice(-2)).toEqual([
      { type: "deviceRemoved", did: bob, deviceId: "phone", actor: alice, actorDevice: "phone", epoch: 2 },
      { type: "removed", did: bob, actor: alice, actorDevice: "phone", epoch: 2 },
    ]);
    const gone = await api.call(bob, "getMessages", { convoId });
    expectOutcome(gone, 403, "NotMember");
  });

  it("an admin (ADMIN_DIDS) may remove another DID's devices without being the creator", async () => {
    const creator = newDid("creator");
    const bob = newDid("bob");
    const { group, convoId } = await rosterConvo(api, device(creator), [device(admin), device(bob)]);
    const reply = await commitBundle(
      api,
      convoId,
      await group.commit(device(admin), { remove: [device(bob)] }),
      device(admin),
    );
    expectOutcome(reply, 200);
    expect(await activeMembers(db, convoId)).toEqual([admin, creator].sort());
  });

  it("any member removes a revoked device of another DID", async () => {
    const { aliceLaptop, bobPhone, group, convoId } = await aliceAndBob();
    await revoke(db, aliceLaptop);
    const reply = await commitBundle(api, convoId, await group.commit(bobPhone, { remove: [aliceLaptop] }), bobPhone);
    expectOutcome(reply, 200);
    expect(reply.data!.removed).toEqual([aliceLaptop]);
  });

  it("any member removes the devices of a DID that has left; the DID gets no second departure event", async () => {
    const { alice, alicePhone, aliceLaptop, bobPhone, group, convoId } = await aliceAndBob();
    expectOutcome(await api.call(alice, "leaveConvo", { convoId }), 200);
    expect(await storedRoster(db, convoId)).toHaveLength(3); // the leaves stay until a member commits their removal
    const reply = await commitBundle(
      api,
      convoId,
      await group.commit(bobPhone, { remove: [alicePhone, aliceLaptop] }),
      bobPhone,
    );
    expectOutcome(reply, 200);
    const events = await membershipEvents(db, convoId);
    expect(events.filter((event) => event.did === alice).map((event) => event.type)).toEqual([
      "joined",
      "deviceAdded",
      "deviceAdded",
      "left",
      "deviceRemoved",
      "deviceRemoved",
    ]);
    await expectRosterOf(db, convoId, group);
  });

  it("a DID that has left can no longer commit, even with leaves in the roster", async () => {
    const { alice, aliceLaptop, bobPhone, group, convoId } = await aliceAndBob();
    expectOutcome(await api.call(alice, "leaveConvo", { convoId }), 200);
    const reply = await commitBundle(
      api,
      convoId,
      await group.commit(aliceLaptop, { remove: [bobPhone] }),
      aliceLaptop,
    );
    expectOutcome(reply, 403, "NotMember");
  });
});

describe("processCommit: the acting device", () => {
  it("a device of a member DID that is not in the roster: 403 NotMember", async () => {
    const { bob, bobPhone, group, convoId } = await aliceAndBob();
    await register(db, device(bob, "tablet"));
    const bundle = await group.commit(bobPhone);
    const reply = await api.call(bob, "processCommit", bundleInput(convoId, bundle, device(bob, "tablet")));
    expectOutcome(reply, 403, "NotMember");
  });

  it("an unregistered deviceId is 403 UnknownDevice, a revoked one 403 DeviceRevoked", async () => {
    const { bob, bobPhone, group, convoId } = await aliceAndBob();
    const bundle = await group.commit(bobPhone);
    expectOutcome(
      await api.call(bob, "processCommit", bundleInput(convoId, bundle, device(bob, "nope"))),
      403,
      "UnknownDevice",
    );
    await revoke(db, bobPhone);
    expectOutcome(await api.call(bob, "processCommit", bundleInput(convoId, bundle, bobPhone)), 403, "DeviceRevoked");
  });

  it("a stranger gets 403 NotMember, an unknown conversation 404", async () => {
    const { bobPhone, group, convoId } = await aliceAndBob();
    const bundle = await group.commit(bobPhone);
    expectOutcome(
      await api.call(newDid("eve"), "processCommit", bundleInput(convoId, bundle, device("did:plc:x"))),
      403,
      "NotMember",
    );
    expectOutcome(
      await api.call(bobPhone.did, "processCommit", bundleInput("nope", bundle, bobPhone)),
      404,
      "ConvoNotFound",
    );
  });

  it("in a conversation that is not roster-checked: 400 InvalidRequest", async () => {
    const alice = newDid("alice");
    const group = await RosterGroup.create(device(alice));
    const created = await api.call(alice, "createConvo", { groupId: group.groupIdHex, cipherSuite: SUITE });
    const bundle = await group.commit(device(alice));
    const reply = await api.call(alice, "processCommit", bundleInput(created.data!.id, bundle, device(alice)));
    expectOutcome(reply, 400, "InvalidRequest");
    expect(messageOf(reply)).toMatch(/roster-checked/);
  });
});

describe("processCommit: a GroupInfo that is not the new epoch's of this group by the committer (InvalidGroupInfo)", () => {
  it("a GroupInfo of the wrong epoch", async () => {
    const { alicePhone, group, convoId } = await aliceAndBob();
    const bundle = await group.commit(alicePhone);
    const reply = await api.call(alicePhone.did, "processCommit", {
      ...bundleInput(convoId, bundle, alicePhone),
      groupInfo: await group.groupInfo(alicePhone), // the current epoch's, not the new one's
    });
    expectOutcome(reply, 400, "InvalidGroupInfo");
  });

  it("a GroupInfo of another group", async () => {
    const { alicePhone, group, convoId } = await aliceAndBob();
    const other = await RosterGroup.create(alicePhone);
    const otherBundle = await other.commit(alicePhone);
    const bundle = await group.commit(alicePhone);
    const reply = await api.call(alicePhone.did, "processCommit", {
      ...bundleInput(convoId, bundle, alicePhone),
      groupInfo: otherBundle.groupInfo,
    });
    expectOutcome(reply, 400, "InvalidGroupInfo");
  });

  it("a GroupInfo signed by another member than the committer", async () => {
    const { alicePhone, bobPhone, group, convoId } = await aliceAndBob();
    const bundle = await group.commit(alicePhone);
    const reply = await api.call(alicePhone.did, "processCommit", {
      ...bundleInput(convoId, bundle, alicePhone),
      groupInfo: await group.groupInfoAfter(bundle, bobPhone),
    });
    expectOutcome(reply, 400, "InvalidGroupInfo");
    expect(messageOf(reply)).toMatch(/signed by the committing device/);
  });

  it("the GroupInfo's signer is the committer's leaf but the request names another device of the DID", async () => {
    const { alice, aliceLaptop, alicePhone, group, convoId } = await aliceAndBob();
    const bundle = await group.commit(alicePhone);
    const reply = await api.call(alice, "processCommit", bundleInput(convoId, bundle, aliceLaptop));
    expectOutcome(reply, 400, "InvalidGroupInfo");
  });
});

describe("processCommit: RosterMismatch", () => {
  it("keyPackageHashes that do not name exactly the added devices", async () => {
    const { bob, alicePhone, group, convoId } = await aliceAndBob();
    await register(db, device(bob, "tablet"), device(bob, "watch"));
    const bundle = await group.commit(alicePhone, { add: [device(bob, "tablet"), device(bob, "watch")] });
    const [first, second] = bundle.keyPackageHashes;
    for (const keyPackageHashes of [[first!], [first!, second!, first!], [first!, { ...second!, deviceId: "phone" }]]) {
      const reply = await api.call(alicePhone.did, "processCommit", {
        ...bundleInput(convoId, bundle, alicePhone),
        keyPackageHashes,
      });
      expectOutcome(reply, 400, "RosterMismatch");
    }
    expectOutcome(await commitBundle(api, convoId, bundle, alicePhone), 200);
    const rows = await db.query<{ recipient_device: string; key_package_hash: string }>(
      `SELECT recipient_device, key_package_hash FROM welcome_messages WHERE convo_id = $1 AND recipient_did = $2 AND recipient_device <> 'phone' ORDER BY recipient_device`,
      [convoId, bob],
    );
    expect(rows).toEqual([
      { recipient_device: "tablet", key_package_hash: first!.hash },
      { recipient_device: "watch", key_package_hash: second!.hash },
    ]);
  });

  it("a tree holding one device twice", async () => {
    const { bob, alicePhone, group, convoId } = await aliceAndBob();
    const tablet = device(bob, "tablet");
    await register(db, tablet);
    const bundle = await group.commit(alicePhone, {
      add: [tablet],
      extraKeyPackages: [{ device: tablet, keys: await RosterGroup.keyPair(tablet) }],
    });
    const reply = await api.call(alicePhone.did, "processCommit", {
      ...bundleInput(convoId, bundle, alicePhone),
      keyPackageHashes: undefined,
    });
    expectOutcome(reply, 400, "RosterMismatch");
    expect(messageOf(reply)).toMatch(/twice/);
  });

  it("a device not registered to its DID, and a revoked device that was not there before", async () => {
    const { bob, alicePhone, group, convoId } = await aliceAndBob();
    const unregistered = await group.commit(alicePhone, { add: [device(bob, "ghost")] });
    expectOutcome(await commitBundle(api, convoId, unregistered, alicePhone), 400, "RosterMismatch");
    await register(db, { ...device(bob, "old"), revoked: true });
    const revoked = await group.commit(alicePhone, { add: [device(bob, "old")] });
    const reply = await commitBundle(api, convoId, revoked, alicePhone);
    expectOutcome(reply, 400, "RosterMismatch");
    expect(messageOf(reply)).toMatch(/revoked/);
    expect(await epochOf(db, convoId)).toBe(1);
  });

  it("a leaf whose signature key its device's owner never published in a key package (a forged device)", async () => {
    const alice = newDid("alice");
    const bob = newDid("bob");
    const alicePhone = device(alice, "phone");
    const bobTablet = device(bob, "tablet");
    await register(db, alicePhone, bobTablet);
    // Alice's client makes key packages itself instead of fetching Bob's: nothing it adds is published.
    const group = await RosterGroup.create(alicePhone);
    const created = await api.call(alice, "createConvo", {
      groupId: group.groupIdHex,
      cipherSuite: SUITE,
      groupInfo: await group.groupInfo(alicePhone),
      deviceId: "phone",
    });
    expectOutcome(created, 200);
    const convoId = created.data!.id;
    const forged = await group.commit(alicePhone, { add: [bobTablet] });
    const reply = await api.call(alice, "processCommit", bundleInput(convoId, forged, alicePhone));
    expectOutcome(reply, 400, "RosterMismatch");
    expect(messageOf(reply)).toMatch(/key package/);
    // Bob publishing some other key package for his tablet does not vouch for Alice's key.
    await publisher(api)(bobTablet, (await group.commit(alicePhone, { add: [bobTablet] })).keyPackageBytes![0]!);
    const [published] = await db.query<{ n: number }>(
      `SELECT count(*) AS n FROM key_packages WHERE owner_did = $1 AND device_id = 'tablet'`,
      [bob],
    );
    expect(Number(published!.n)).toBe(1);
    expectOutcome(
      await api.call(alice, "processCommit", bundleInput(convoId, forged, alicePhone)),
      400,
      "RosterMismatch",
    );
    expect(await storedRoster(db, convoId)).toEqual([`${alice}#phone`]);
  });

  it("a revoked device already in the roster may stay while other changes are committed", async () => {
    const { bob, aliceLaptop, alicePhone, group, convoId } = await aliceAndBob();
    await revoke(db, aliceLaptop);
    await register(db, device(bob, "tablet"));
    const reply = await commitBundle(
      api,
      convoId,
      await group.commit(alicePhone, { add: [device(bob, "tablet")] }),
      alicePhone,
    );
    expectOutcome(reply, 200);
  });
});

describe("processCommit: one commit per epoch and repeats", () => {
  it("a second commit for the same epoch is 409 EpochMismatch", async () => {
    const { alicePhone, bobPhone, group, convoId } = await aliceAndBob();
    const first = await group.commit(alicePhone);
    const rival = await group.commit(bobPhone);
    expectOutcome(await commitBundle(api, convoId, first, alicePhone), 200);
    const reply = await api.call(bobPhone.did, "processCommit", bundleInput(convoId, rival, bobPhone));
    expectOutcome(reply, 409, "EpochMismatch");
  });

  it("the same bundle again answers the same result while it is the latest; after a later commit, 409", async () => {
    const { alicePhone, bob, group, convoId } = await aliceAndBob();
    await register(db, device(bob, "tablet"));
    const bundle = await group.commit(alicePhone, { add: [device(bob, "tablet")] });
    const body = bundleInput(convoId, bundle, alicePhone);
    const first = await api.call(alicePhone.did, "processCommit", body);
    expectOutcome(first, 200);
    await bundle.apply();
    const again = await api.call(alicePhone.did, "processCommit", body);
    expectOutcome(again, 200);
    expect(again.data).toEqual(first.data);
    // The same commit with another GroupInfo is not the same bundle.
    const other = await api.call(alicePhone.did, "processCommit", {
      ...body,
      groupInfo: await group.groupInfo(device(bob, "tablet")),
    });
    expectOutcome(other, 409, "EpochMismatch");
    expectOutcome(await commitBundle(api, convoId, await group.commit(alicePhone), alicePhone), 200);
    expectOutcome(await api.call(alicePhone.did, "processCommit", body), 409, "EpochMismatch");
  });

  it("an idempotency key replays the stored answer", async () => {
    const { alicePhone, group, convoId } = await aliceAndBob();
    const bundle = await group.commit(alicePhone);
    const body = { ...bundleInput(convoId, bundle, alicePhone), idempotencyKey: "commit-1" };
    const first = await api.call(alicePhone.did, "processCommit", body);
    expectOutcome(first, 200);
    await bundle.apply();
    expectOutcome(await commitBundle(api, convoId, await group.commit(alicePhone), alicePhone), 200);
    const replay = await api.call(alicePhone.did, "processCommit", body);
    expectOutcome(replay, 200);
    expect(first.error === undefined && first.replayed).toBe(false);
    expect(replay.error === undefined && replay.replayed).toBe(true);
    expect(replay.data).toEqual(first.data);
    expect(await epochOf(db, convoId)).toBe(3);
  });

  it("a commit whose framing disagrees with the epoch field, or bytes that are no commit: 400 InvalidCommit", async () => {
    const { alicePhone, group, convoId } = await aliceAndBob();
    const bundle = await group.commit(alicePhone);
    const body = bundleInput(convoId, bundle, alicePhone);
    expectOutcome(await api.call(alicePhone.did, "processCommit", { ...body, epoch: 7 }), 400, "InvalidCommit");
    expectOutcome(
      await api.call(alicePhone.did, "processCommit", { ...body, commit: body.groupInfo }),
      400,
      "InvalidCommit",
    );
  });

  it("a PublicMessage commit whose sender leaf is not the acting device's: 400 InvalidCommit", async () => {
    const { alice, alicePhone, aliceLaptop, group, convoId } = await aliceAndBob();
    const bundle = await group.commit(aliceLaptop, { publicMessage: true });
    const reply = await api.call(alice, "processCommit", bundleInput(convoId, bundle, alicePhone));
    expectOutcome(reply, 400, "InvalidCommit");
    expectOutcome(await commitBundle(api, convoId, bundle, aliceLaptop), 200);
  });

  it("a welcome with a commit that adds no device: 400 InvalidRequest", async () => {
    const { alicePhone, bob, group, convoId } = await aliceAndBob();
    await register(db, device(bob, "tablet"));
    const withWelcome = await group.commit(alicePhone, { add: [device(bob, "tablet")] });
    const bundle = await group.commit(alicePhone);
    const reply = await api.call(alicePhone.did, "processCommit", {
      ...bundleInput(convoId, bundle, alicePhone),
      welcomeMessage: withWelcome.welcome!,
    });
    expectOutcome(reply, 400, "InvalidRequest");
  });
});

/** The commit with one bit of its signature flipped (a PublicMessage stays well-formed). */
function withBadSignature(commit: Uint8Array): Uint8Array {
  const message = decodeMlsMessage(commit, 0)![0];
  if (message.wireformat !== "mls_public_message") throw new Error("expected a PublicMessage");
  const signature = Uint8Array.from(message.publicMessage.auth.signature);
  signature[5]! ^= 1;
  const auth = { ...message.publicMessage.auth, signature };
  return encodeMlsMessage({ ...message, publicMessage: { ...message.publicMessage, auth } });
}

describe("processCommit: commits sent as PublicMessages are checked further", () => {
  it("a signature that does not verify with the committing device's key: 400 InvalidCommit", async () => {
    const { alicePhone, group, convoId } = await aliceAndBob();
    const bundle = await group.commit(alicePhone, { publicMessage: true });
    const reply = await api.call(alicePhone.did, "processCommit", {
      ...bundleInput(convoId, bundle, alicePhone),
      commit: withBadSignature(bundle.commit),
    });
    expectOutcome(reply, 400, "InvalidCommit");
    expect(messageOf(reply)).toMatch(/signature/);
    expectOutcome(await commitBundle(api, convoId, bundle, alicePhone), 200);
  });

  it("a GroupInfo whose tree is not what the commit's proposals make: RosterMismatch", async () => {
    const { alicePhone, bob, group, convoId } = await aliceAndBob();
    const [tablet, watch] = [device(bob, "tablet"), device(bob, "watch")];
    await register(db, tablet, watch);
    const addsTablet = await group.commit(alicePhone, { add: [tablet], publicMessage: true });
    const addsWatch = await group.commit(alicePhone, { add: [watch], publicMessage: true });
    const reply = await api.call(alicePhone.did, "processCommit", {
      ...bundleInput(convoId, addsWatch, alicePhone),
      commit: addsTablet.commit,
    });
    expectOutcome(reply, 400, "RosterMismatch");
    expect(messageOf(reply)).toMatch(/proposals/);
    // The same mix as a PrivateMessage cannot be told apart by the server: that is what PublicMessages buy.
    const privateTablet = await group.commit(alicePhone, { add: [tablet] });
    const privateWatch = await group.commit(alicePhone, { add: [watch] });
    const blind = await api.call(alicePhone.did, "processCommit", {
      ...bundleInput(convoId, privateWatch, alicePhone),
      commit: privateTablet.commit,
    });
    expectOutcome(blind, 200);
  });

  it("an external commit whose signature does not verify with its new leaf's key: 400 InvalidCommit", async () => {
    const { bob, group, convoId } = await aliceAndBob();
    const tablet = device(bob, "tablet");
    await register(db, tablet);
    const bundle = await group.externalJoin(tablet);
    const reply = await api.call(bob, "processCommit", {
      ...bundleInput(convoId, bundle, tablet),
      commit: withBadSignature(bundle.commit),
    });
    expectOutcome(reply, 400, "InvalidCommit");
  });
});

describe("getGroupInfo", () => {
  it("answers the latest GroupInfo to active members, 403 to others, 404 where there is none", async () => {
    const { alicePhone, bob, group, convoId } = await aliceAndBob();
    const bundle = await group.commit(alicePhone);
    expectOutcome(await commitBundle(api, convoId, bundle, alicePhone), 200);
    const reply = await api.call(bob, "getGroupInfo", { convoId });
    expectOutcome(reply, 200);
    expect(reply.data).toEqual({ convoId, epoch: 2, groupInfo: new Uint8Array(bundle.groupInfo) });
    expectOutcome(await api.call(newDid("eve"), "getGroupInfo", { convoId }), 403, "NotMember");
    expectOutcome(await api.call(bob, "getGroupInfo", { convoId: "nope" }), 404, "ConvoNotFound");
    expectOutcome(await api.call(bob, "leaveConvo", { convoId }), 200);
    expectOutcome(await api.call(bob, "getGroupInfo", { convoId }), 403, "NotMember");
    const plain = await api.call(bob, "createConvo", { groupId: randomGroupId(), cipherSuite: SUITE });
    expectOutcome(await api.call(bob, "getGroupInfo", { convoId: plain.data!.id }), 404, "GroupInfoNotFound");
  });
});
