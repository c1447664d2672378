/**
 * The devices section of the contract end to end, with real ts-mls clients (one per device) over real HTTP to a
 * real server process on real PostgreSQL: Alice's phone adds Bob's phone and laptop with one commit bundle, both
 * join from the one Welcome, Bob's new tablet joins by external commit, the laptop loses its state and resyncs, a
 * second rejoin inside the cooldown is refused, Bob revokes the tablet and Alice commits its removal, and every
 * remaining device decrypts every later message. Then GroupInfos that disagree with their commit are refused and
 * leave nothing behind. It prints a readable log of the run.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { testDatabase } from "../helpers/context.js";
import { MlsDevice, readGroupInfo, rosterNames, XrpcFailure, type MlsDevice as Device } from "../helpers/mlsDevice.js";
import { enterDevicesBattle } from "./fixtures.js";
import { battleReport, type BattleReport } from "../battle/report.js";
import { start, type BattleServer } from "../battle/server.js";

const COOLDOWN_SECONDS = 60;
const db = testDatabase(2);
let server: BattleServer;

beforeAll(async () => {
  server = await start({ REJOIN_COOLDOWN_SECONDS: String(COOLDOWN_SECONDS) });
});

afterAll(async () => {
  await server?.stop();
  await db.close();
});

/** The XrpcFailure a call ends with (fails the test when it succeeds). */
async function refusal(call: Promise<unknown>): Promise<XrpcFailure> {
  const outcome = await call.then(
    (value) => ({ value }),
    (error: unknown) => ({ error }),
  );
  if ("value" in outcome) throw new Error(`expected a refusal, got ${JSON.stringify(outcome.value)}`);
  if (!(outcome.error instanceof XrpcFailure)) throw outcome.error;
  return outcome.error;
}

describe("devices end to end (real clients, real server, real PostgreSQL)", () => {
  it("multi-device adds, Welcome joins, external join, resync, cooldown, revocation and removal; every remaining device decrypts", async () => {
    const report = battleReport("Devices end to end: Alice and Bob's phone, laptop and tablet");
    report.onFailure(() => server.output());
    const battle = await enterDevicesBattle(db, "e2e");
    const alice = battle.did("alice");
    const bob = battle.did("bob");
    const carol = battle.did("carol");
    const dave = battle.did("dave");
    const names = { [alice]: "alice", [bob]: "bob", [carol]: "carol", [dave]: "dave" };
    const say = (line: string) => report.log(line);
    const device = (did: string, deviceId: string) =>
      MlsDevice.create(server.url, did, deviceId, `${names[did]}/${deviceId}`);

    const alicePhone = await device(alice, "phone");
    const bobPhone = await device(bob, "phone");
    const bobLaptop = await device(bob, "laptop");
    for (const each of [alicePhone, bobPhone, bobLaptop]) {
      const registered = await each.register(each.name);
      expect(registered).toEqual({ deviceId: each.deviceId, credentialIdentity: each.identity });
    }
    await bobPhone.publishKeyPackages(2, { lastResort: true });
    await bobLaptop.publishKeyPackages(2, { lastResort: true });
    say("registered alice/phone, bob/phone, bob/laptop; bob's devices published 2 key packages + 1 last-resort each");

    // --- one commit bundle adds two devices; one Welcome serves both
    const convoId = await alicePhone.createConvo({ name: `${battle.prefix}-convo` });
    say(`alice/phone creates a roster-checked conversation → epoch ${alicePhone.epoch(convoId)}`);
    const bobs = await alicePhone.claimKeyPackages(bob);
    expect(bobs.map((kp) => kp.deviceId).sort()).toEqual(["laptop", "phone"]);
    const added = await alicePhone.commit(convoId, { add: bobs });
    expect(added.newEpoch).toBe(1);
    expect(sorted(added.added)).toEqual([dev(bob, "laptop"), dev(bob, "phone")]);
    expect(added.removed).toEqual([]);
    say(`alice/phone adds bob/phone+bob/laptop with one commit bundle → epoch ${added.newEpoch}`);

    await bobPhone.joinFromWelcome(convoId);
    await bobLaptop.joinFromWelcome(convoId);
    expect([bobPhone.epoch(convoId), bobLaptop.epoch(convoId)]).toEqual([1, 1]);
    say("bob/phone and bob/laptop join from the one Welcome → epoch 1");
    await expectRoster(convoId, alicePhone, 1, ["alice/phone", "bob/laptop", "bob/phone"], names, report);

    await alicePhone.send(convoId, "hi Bob, all your devices");
    expect(texts(await bobPhone.catchUp(convoId))).toEqual(["hi Bob, all your devices"]);
    expect(texts(await bobLaptop.catchUp(convoId))).toEqual(["hi Bob, all your devices"]);
    say("alice/phone → 'hi Bob, all your devices': bob/phone and bob/laptop decrypt it");

    // --- a new device of a member joins by external commit
    const bobTablet = await device(bob, "tablet");
    await bobTablet.register("tablet");
    const joined = await bobTablet.externalJoin(convoId);
    expect(joined.newEpoch).toBe(2);
    expect(joined.added).toEqual([dev(bob, "tablet")]);
    expect(joined.removed).toEqual([]);
    say(`bob/tablet joins by external commit → epoch ${joined.newEpoch}`);
    await catchUpAll([alicePhone, bobPhone, bobLaptop], convoId, 2);
    await expectRoster(convoId, bobTablet, 2, ["alice/phone", "bob/laptop", "bob/phone", "bob/tablet"], names, report);

    // --- the laptop loses its state and resyncs (an external commit that replaces its former leaf)
    bobLaptop.forget(convoId);
    const resynced = await bobLaptop.externalJoin(convoId, { resync: true });
    expect(resynced.newEpoch).toBe(3);
    say(
      `bob/laptop loses its state and resyncs by external commit → epoch ${resynced.newEpoch}` +
        ` (added ${fmt(resynced.added, names)}, removed ${fmt(resynced.removed, names)})`,
    );
    await catchUpAll([alicePhone, bobPhone, bobTablet], convoId, 3);
    await expectRoster(convoId, alicePhone, 3, ["alice/phone", "bob/laptop", "bob/phone", "bob/tablet"], names, report);

    // --- a second rejoin inside the cooldown
    const again = await refusal(bobLaptop.externalJoin(convoId, { resync: true }));
    expect(again.status).toBe(429);
    expect(again.error).toBe("RejoinCooldown");
    const retryAfter = Number(again.retryAfter);
    expect(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= COOLDOWN_SECONDS).toBe(true);
    expect(bobLaptop.epoch(convoId)).toBe(3);
    expect((await alicePhone.http.get("getEpoch", { convoId })).currentEpoch).toBe(3);
    say(`bob/laptop rejoins again at once → 429 RejoinCooldown (Retry-After: ${again.retryAfter}); still epoch 3`);

    // --- Bob revokes the tablet; Alice commits its removal
    expect(await bobPhone.revokeDevice("tablet")).toEqual({ revoked: true });
    say("bob revokes bob/tablet");
    const blocked = await refusal(bobTablet.send(convoId, "am I still here?"));
    expect([blocked.status, blocked.error]).toEqual([403, "DeviceRevoked"]);
    say("bob/tablet tries to send → 403 DeviceRevoked");
    // As a PublicMessage: the server verifies its signature and that its proposals are the roster change.
    const removal = await alicePhone.commit(convoId, { remove: [dev(bob, "tablet")], publicMessage: true });
    expect(removal.newEpoch).toBe(4);
    expect(removal.removed).toEqual([dev(bob, "tablet")]);
    expect(removal.added).toEqual([]);
    say(`alice/phone commits the removal of bob/tablet (a PublicMessage) → epoch ${removal.newEpoch}`);
    await catchUpAll([bobPhone, bobLaptop], convoId, 4);
    await bobTablet.catchUp(convoId);
    expect(bobTablet.removed(convoId)).toBe(true);
    say("bob/tablet reads the commit that removes it: it is out of the group");
    await expectRoster(convoId, bobPhone, 4, ["alice/phone", "bob/laptop", "bob/phone"], names, report);

    // --- every remaining device decrypts every later message
    const remaining = [alicePhone, bobPhone, bobLaptop];
    for (const sender of remaining) await sender.send(convoId, `from ${sender.name} in epoch 4`);
    for (const reader of remaining) {
      const got = texts(await reader.catchUp(convoId));
      expect(got).toEqual(
        remaining.filter((other) => other !== reader).map((other) => `from ${other.name} in epoch 4`),
      );
      say(`${reader.name} decrypts ${got.length}/${got.length}: ${got.map((text) => `'${text}'`).join(", ")}`);
    }

    // --- commit bundles whose GroupInfo disagrees with the commit are refused and leave nothing behind
    const carolPhone = await device(carol, "phone");
    await carolPhone.register("phone");
    await carolPhone.publishKeyPackages(1);
    const [carols] = await alicePhone.claimKeyPackages(carol);
    expect(carols?.deviceId).toBe("phone");

    // An empty commit (it changes no leaf) with the GroupInfo of the epoch it leaves: only the epoch disagrees.
    const current = await alicePhone.getGroupInfo(convoId);
    const empty = await alicePhone.prepareCommit(convoId, {});
    const wrongEpoch = await refusal(alicePhone.sendCommit(convoId, { ...empty, groupInfo: current.groupInfo }));
    expect(wrongEpoch.status).toBe(400);
    expect(wrongEpoch.error).toBe("InvalidGroupInfo");
    say(`commit 4→5 with the GroupInfo of epoch ${current.epoch} → ${wrongEpoch.status} ${wrongEpoch.error}`);

    const tampered = Uint8Array.from(empty.groupInfo);
    tampered[tampered.length - 1]! ^= 0x01; // the signature's last byte
    const badSignature = await refusal(alicePhone.sendCommit(convoId, { ...empty, groupInfo: tampered }));
    expect([badSignature.status, badSignature.error]).toEqual([400, "InvalidGroupInfo"]);
    say(`the right GroupInfo with one bit of its signature flipped → ${badSignature.status} ${badSignature.error}`);

    const notGroupInfo = await refusal(alicePhone.sendCommit(convoId, { ...empty, groupInfo: empty.commit }));
    expect([notGroupInfo.status, notGroupInfo.error]).toEqual([400, "InvalidGroupInfo"]);
    say(`the commit's own bytes as its GroupInfo → ${notGroupInfo.status} ${notGroupInfo.error}`);

    const epochField = await refusal(alicePhone.sendCommit(convoId, { ...empty, epoch: 3 }));
    expect([epochField.status, epochField.error]).toEqual([400, "InvalidCommit"]);
    say(`commit of epoch 4 with the field epoch: 3 → ${epochField.status} ${epochField.error}`);

    // The GroupInfo adds carol/phone; the request declares carol/laptop's key package instead.
    const misdeclared = await alicePhone.prepareCommit(convoId, { add: [carols!] });
    const otherDevice = misdeclared.keyPackageHashes.map((entry) => ({ ...entry, deviceId: "laptop" }));
    const declared = await refusal(alicePhone.sendCommit(convoId, { ...misdeclared, keyPackageHashes: otherDevice }));
    expect([declared.status, declared.error]).toEqual([400, "RosterMismatch"]);
    say(
      `GroupInfo roster adds carol/phone, keyPackageHashes declare carol/laptop → ${declared.status} ${declared.error}`,
    );

    const ghost = await device(carol, "ghost"); // never registered
    const ghostAdd = await alicePhone.prepareCommit(convoId, { add: [await ghost.unpublishedKeyPackage()] });
    const unregistered = await refusal(alicePhone.sendCommit(convoId, ghostAdd));
    expect([unregistered.status, unregistered.error]).toEqual([400, "RosterMismatch"]);
    say(`GroupInfo roster adds carol/ghost (never registered) → ${unregistered.status} ${unregistered.error}`);

    const revokedAdd = await alicePhone.prepareCommit(convoId, { add: [await bobTablet.unpublishedKeyPackage()] });
    const revokedBack = await refusal(alicePhone.sendCommit(convoId, revokedAdd));
    expect([revokedBack.status, revokedBack.error]).toEqual([400, "RosterMismatch"]);
    say(`GroupInfo roster brings back the revoked bob/tablet → ${revokedBack.status} ${revokedBack.error}`);

    const otherGroup = await device(alice, "phone");
    const foreignConvo = await otherGroup.createConvo({ name: `${battle.prefix}-other` });
    const foreign = await otherGroup.getGroupInfo(foreignConvo);
    const foreignInfo = await refusal(alicePhone.sendCommit(convoId, { ...empty, groupInfo: foreign.groupInfo }));
    expect(foreignInfo.status).toBe(400);
    expect(foreignInfo.error).toBe("InvalidGroupInfo");
    say(`commit with another conversation's GroupInfo → ${foreignInfo.status} ${foreignInfo.error}`);

    // Who may not: another DID's devices are the creator's to remove; a non-member DID and a revoked device never join.
    const notCreator = await refusal(bobLaptop.commit(convoId, { remove: [dev(alice, "phone")] }));
    expect([notCreator.status, notCreator.error]).toEqual([403, "NotCreator"]);
    say(
      `bob/laptop commits the removal of alice/phone (bob is not the creator) → ${notCreator.status} ${notCreator.error}`,
    );

    const davePhone = await device(dave, "phone");
    await davePhone.register("phone");
    const daveLooks = await refusal(davePhone.getGroupInfo(convoId));
    expect([daveLooks.status, daveLooks.error]).toEqual([403, "NotMember"]);
    const handedOver = await alicePhone.getGroupInfo(convoId);
    const daveJoins = await refusal(
      davePhone.sendExternalJoin(convoId, await davePhone.prepareExternalJoin(convoId, { from: handedOver })),
    );
    expect([daveJoins.status, daveJoins.error]).toEqual([403, "NotMember"]);
    say(
      `dave/phone (dave is no member) asks for the GroupInfo → ${daveLooks.status} ${daveLooks.error};` +
        ` joins by external commit from a GroupInfo handed over → ${daveJoins.status} ${daveJoins.error}`,
    );

    const tabletBack = await refusal(bobTablet.externalJoin(convoId));
    expect([tabletBack.status, tabletBack.error]).toEqual([403, "DeviceRevoked"]);
    say(`the revoked bob/tablet joins again by external commit → ${tabletBack.status} ${tabletBack.error}`);

    expect((await alicePhone.http.get("getEpoch", { convoId })).currentEpoch).toBe(4);
    await expectRoster(convoId, alicePhone, 4, ["alice/phone", "bob/laptop", "bob/phone"], names, report);
    say("after the refusals: still epoch 4, the stored GroupInfo and roster unchanged");

    const carolAdded = await alicePhone.commit(convoId, { add: [carols!] });
    expect([carolAdded.newEpoch, carolAdded.added]).toEqual([5, [dev(carol, "phone")]]);
    await carolPhone.joinFromWelcome(convoId);
    await catchUpAll([bobPhone, bobLaptop], convoId, 5);
    await bobLaptop.send(convoId, "welcome Carol");
    expect(texts(await carolPhone.catchUp(convoId))).toEqual(["welcome Carol"]);
    say("the honest bundle adding carol/phone → epoch 5; carol/phone joins and decrypts bob/laptop's 'welcome Carol'");

    report.pass(
      "every device joined, resynced or left as the contract says, and every remaining device decrypted every later message",
    );

    async function catchUpAll(devices: Device[], convo: string, epoch: number) {
      for (const each of devices) {
        await each.catchUp(convo);
        expect(each.epoch(convo), `${each.name}'s epoch`).toBe(epoch);
      }
    }
  });
});

/** getGroupInfo's roster (checked as a client checks it) equals `expected` and the reader's own tree agrees. */
async function expectRoster(
  convoId: string,
  reader: MlsDevice,
  epoch: number,
  expected: string[],
  names: Record<string, string>,
  report: BattleReport,
) {
  const answer = await reader.getGroupInfo(convoId);
  const read = await readGroupInfo(answer.groupInfo);
  expect([answer.epoch, read.epoch]).toEqual([epoch, epoch]);
  expect(rosterNames(read.roster, names)).toEqual(expected);
  expect(rosterNames(reader.roster(convoId), names)).toEqual(expected);
  report.log(`  getGroupInfo: epoch ${epoch}, roster ${expected.join(", ")}`);
}

const dev = (did: string, deviceId: string) => ({ did, deviceId });
const sorted = <T extends { did: string; deviceId: string }>(list: T[]) =>
  [...list].sort((a, b) => `${a.did}#${a.deviceId}`.localeCompare(`${b.did}#${b.deviceId}`));
const texts = (received: { text: string }[]) => received.map((message) => message.text);
const fmt = (list: { did: string; deviceId: string }[], names: Record<string, string>) =>
  list.length ? list.map(({ did, deviceId }) => `${names[did]}/${deviceId}`).join("+") : "none";
