/**
 * Commit bundles under concurrency, over real HTTP against two real servers (src/entry/node.ts) on one real
 * PostgreSQL: rival commits for one epoch (member and external ones) leave exactly one winner whose GroupInfo is
 * the roster, and revocations racing commits that add the device never deadlock and leave a consistent state.
 */
import { afterAll, describe, expect, it } from "vitest";
import { testApp, testDatabase } from "../helpers/context.js";
import { conversationLockWaiters, deviceLockWaiters, holdConversationRow } from "../helpers/rowLock.js";
import type { Bundle, Device } from "../helpers/rosterGroup.js";
import { Api } from "../messaging/client.js";
import {
  bundleInput,
  device,
  epochOf,
  expectRosterOf,
  membershipEvents,
  newDid,
  register,
  storedRoster,
} from "./fixtures.js";
import { httpRosterConvo, twoServers } from "./servers.js";

const db = testDatabase(4);
afterAll(() => db.close());
const server = twoServers();

/** A roster-checked conversation of Alice's two devices and Bob's two, created over HTTP. */
async function conversation() {
  const alice = newDid("alice");
  const bob = newDid("bob");
  const devices = [device(alice, "phone"), device(alice, "laptop"), device(bob, "phone"), device(bob, "laptop")];
  await register(db, ...devices);
  const { group, convoId } = await httpRosterConvo(server(0), devices[0]!, devices.slice(1));
  return { alice, bob, devices, group, convoId };
}

describe("one commit per epoch (real servers, real PostgreSQL)", () => {
  it("rival bundles for one epoch from every device, round after round: one 200, the rest 409, the roster the winner's", async () => {
    const { devices, group, convoId } = await conversation();
    for (let round = 0; round < 4; round++) {
      const epoch = group.epoch;
      const rivals: { by: Device; bundle: Bundle }[] = [];
      for (const [i, by] of devices.entries()) {
        const added = device(by.did, `r${round}d${i}`);
        await register(db, added);
        rivals.push({ by, bundle: await group.commit(by, { add: [added] }) });
      }
      const answers = await Promise.all(
        rivals.map(({ by, bundle }, i) => server(i).call(by.did, "processCommit", bundleInput(convoId, bundle, by))),
      );
      const winners = answers.flatMap((answer, i) => (answer.status === 200 ? [i] : []));
      expect(winners, JSON.stringify(answers)).toHaveLength(1);
      for (const [i, answer] of answers.entries()) {
        if (i === winners[0]) continue;
        expect(answer, JSON.stringify(answer)).toMatchObject({ status: 409, error: "EpochMismatch" });
      }
      const winner = rivals[winners[0]!]!;
      expect(answers[winners[0]!]!.data).toMatchObject({
        newEpoch: epoch + 1,
        added: winner.bundle.added,
        removed: [],
      });
      await winner.bundle.apply();
      await expectRosterOf(db, convoId, group);
      expect(await epochOf(db, convoId)).toBe(epoch + 1);
      const [info] = await db.query<{ group_info: Uint8Array }>(
        `SELECT group_info FROM group_infos WHERE convo_id = $1`,
        [convoId],
      );
      expect(new Uint8Array(info!.group_info)).toEqual(new Uint8Array(winner.bundle.groupInfo));
    }
  });

  it("external joins of new devices race a member's commit: one wins", async () => {
    const { alice, bob, group, convoId } = await conversation();
    for (let round = 0; round < 3; round++) {
      const joiners = [device(alice, `x${round}a`), device(bob, `x${round}b`)];
      await register(db, ...joiners);
      const rivals = [
        ...(await Promise.all(joiners.map(async (by) => ({ by, bundle: await group.externalJoin(by) })))),
        { by: device(bob, "phone"), bundle: await group.commit(device(bob, "phone")) },
      ];
      const answers = await Promise.all(
        rivals.map(({ by, bundle }, i) => server(i).call(by.did, "processCommit", bundleInput(convoId, bundle, by))),
      );
      const winners = answers.flatMap((answer, i) => (answer.status === 200 ? [i] : []));
      expect(winners, JSON.stringify(answers)).toHaveLength(1);
      expect(answers.filter((answer) => answer.status === 409)).toHaveLength(rivals.length - 1);
      await rivals[winners[0]!]!.bundle.apply();
      await expectRosterOf(db, convoId, group);
    }
  });
});

describe("revocation racing commits (lock order: devices, then conversations)", () => {
  it("revoking a device while commits add it: never a deadlock or 5xx, and the outcome is consistent", async () => {
    const { alice, bob, group, convoId } = await conversation();
    for (let round = 0; round < 6; round++) {
      const target = device(bob, `v${round}`);
      await register(db, target);
      const bundle = await group.commit(device(alice, "phone"), { add: [target] });
      const [commit, revoked] = await Promise.all([
        server(round).call(alice, "processCommit", bundleInput(convoId, bundle, device(alice, "phone"))),
        server(round + 1).call(bob, "revokeDevice", { deviceId: target.deviceId }),
      ]);
      expect(revoked.status, JSON.stringify(revoked)).toBe(200);
      const inRoster = (await storedRoster(db, convoId)).includes(`${bob}#${target.deviceId}`);
      const revocationEvent = (await membershipEvents(db, convoId)).some(
        (event) => event.type === "deviceRevoked" && event.did === bob && event.deviceId === target.deviceId,
      );
      if (commit.status === 200) {
        // The commit came first: the revocation found the device in the roster and asked for its removal.
        expect(inRoster && revocationEvent).toBe(true);
        await bundle.apply();
      } else {
        expect(commit, JSON.stringify(commit)).toMatchObject({ status: 400, error: "RosterMismatch" });
        expect(inRoster || revocationEvent).toBe(false);
      }
    }
    await expectRosterOf(db, convoId, group);
  });
});

describe("the lock order, step by step", () => {
  it("a commit holding a device (FOR SHARE) and waiting for the conversation, a revocation waiting for the device: both finish", async () => {
    const api = new Api(testApp(db).app);
    const { alice, bob, group, convoId } = await conversation();
    const added = device(alice, "tablet");
    await register(db, added);
    const bundle = await group.commit(device(alice, "phone"), { add: [added] });

    const convo = await holdConversationRow(db, convoId);
    const convoCtid = convo.ctid;
    // The commit locks the devices of its tree (Bob's laptop among them), then waits for the conversation.
    const commit = api.call(alice, "processCommit", bundleInput(convoId, bundle, device(alice, "phone")));
    await conversationLockWaiters(db, convoCtid, 1);
    // Revoking Bob's laptop waits for the commit's share lock; once it has the device, it locks the conversation.
    const [laptop] = await db.query<{ ctid: string }>(
      `SELECT ctid::text FROM devices WHERE did = $1 AND device_id = 'laptop'`,
      [bob],
    );
    const revoke = api.call(bob, "revokeDevice", { deviceId: "laptop" });
    await deviceLockWaiters(db, laptop!.ctid, 1);
    convo.release();
    await convo.done;

    const [committed, revoked] = await Promise.all([commit, revoke]);
    expect(committed.status, JSON.stringify(committed)).toBe(200);
    expect(revoked.status, JSON.stringify(revoked)).toBe(200);
    const events = await membershipEvents(db, convoId);
    expect(events.at(-1)).toMatchObject({ type: "deviceRevoked", did: bob, deviceId: "laptop", epoch: 2 });
  });
});
