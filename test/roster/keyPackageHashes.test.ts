/**
 * keyPackageHashes in roster-checked conversations say which key package each added device's leaf was made from;
 * the welcome row keeps that hash, and confirming (or retiring) the welcome consumes that package. An entry must
 * therefore name a package of its own device, the one carrying the leaf's key: else a member could make a welcome
 * consume another device's package (it matches by owner and hash only).
 */
import { afterAll, describe, expect, it } from "vitest";
import { testApp, testDatabase } from "../helpers/context.js";
import { SUITE } from "../helpers/rosterGroup.js";
import { Api, expectOutcome } from "../messaging/client.js";
import { bundleInput, device, newDid, newGroup, register, rosterConvo } from "./fixtures.js";

const db = testDatabase();
afterAll(() => db.close());
const api = new Api(testApp(db).app);

async function consumed(did: string): Promise<Record<string, boolean>> {
  const rows = await db.query<{ device_id: string; consumed: boolean }>(
    `SELECT device_id, consumed_at IS NOT NULL AS consumed FROM key_packages WHERE owner_did = $1`,
    [did],
  );
  return Object.fromEntries(rows.map((row) => [row.device_id, row.consumed]));
}

describe("keyPackageHashes name the added device's own key package", () => {
  it("processCommit: the hash of the same DID's other device's package is RosterMismatch, and consumes nothing", async () => {
    const alice = newDid("alice");
    const bob = newDid("bob");
    await register(db, device(bob, "phone"), device(bob, "tablet"));
    const { group, convoId } = await rosterConvo(api, device(alice));
    const addsTablet = await group.commit(device(alice), { add: [device(bob, "tablet")] });
    // A package Bob's phone published (the group's publish hook puts it on the server).
    const phoneHash = (await group.commit(device(alice), { add: [device(bob, "phone")] })).keyPackageHashes[0]!.hash;
    const forged = [{ did: bob, deviceId: "tablet", hash: phoneHash }];
    const reply = await api.call(
      alice,
      "processCommit",
      bundleInput(convoId, addsTablet, device(alice), { keyPackageHashes: forged }),
    );
    expectOutcome(reply, 400, "RosterMismatch");
    const unknown = [{ did: bob, deviceId: "tablet", hash: "ab".repeat(32) }];
    expectOutcome(
      await api.call(
        alice,
        "processCommit",
        bundleInput(convoId, addsTablet, device(alice), { keyPackageHashes: unknown }),
      ),
      400,
      "RosterMismatch",
    );
    // The honest bundle goes through, and its welcome consumes the tablet's package, not the phone's.
    expectOutcome(await api.call(alice, "processCommit", bundleInput(convoId, addsTablet, device(alice))), 200);
    expectOutcome(await api.call(bob, "confirmWelcome", { convoId, success: true, deviceId: "tablet" }), 200);
    expect(await consumed(bob)).toEqual({ phone: false, tablet: true });
  });

  it("createConvo: the same", async () => {
    const alice = newDid("alice");
    const bob = newDid("bob");
    await register(db, device(bob, "phone"), device(bob, "tablet"));
    const group = await newGroup(api, device(alice));
    const bundle = await group.commit(device(alice), { add: [device(bob, "tablet")] });
    const phoneHash = (await group.commit(device(alice), { add: [device(bob, "phone")] })).keyPackageHashes[0]!.hash;
    await bundle.apply();
    const body = {
      groupId: group.groupIdHex,
      cipherSuite: SUITE,
      groupInfo: await group.groupInfo(device(alice)),
      welcomeMessage: bundle.welcome!,
    };
    const forged = [{ did: bob, deviceId: "tablet", hash: phoneHash }];
    expectOutcome(await api.call(alice, "createConvo", { ...body, keyPackageHashes: forged }), 400, "RosterMismatch");
    expectOutcome(await api.call(alice, "createConvo", { ...body, keyPackageHashes: bundle.keyPackageHashes }), 200);
    expect(await consumed(bob)).toEqual({ phone: false, tablet: false });
  });
});
