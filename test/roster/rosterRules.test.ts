/**
 * The roster rules as pure functions, for the cases a real client library never produces: a moved device, a
 * re-keyed leaf, an external commit that changes more than its own leaf.
 */
import { describe, expect, it } from "vitest";
import type { Queryable } from "../../src/db/driver.js";
import type { GroupInfoRead, RosterLeaf } from "../../src/mls/groupInfo.js";
import type { CommitBundle } from "../../src/services/commitBundle.js";
import { checkExternalJoin } from "../../src/services/externalJoin.js";
import { diffRoster, type RosterEntry } from "../../src/services/roster.js";

const key = (n: number) => new Uint8Array([n]);
const leaf = (leafIndex: number, did: string, deviceId: string, sig = leafIndex): RosterLeaf => ({
  leafIndex,
  identity: deviceId ? `${did}#${deviceId}` : did,
  did,
  deviceId,
  signatureKey: key(sig),
});
const entry = (leafIndex: number, did: string, deviceId: string, sig = leafIndex): RosterEntry => ({
  did,
  deviceId,
  leafIndex,
  signatureKey: key(sig),
  addedEpoch: 0,
});

const A = "did:plc:a";
const B = "did:plc:b";
const before = [entry(0, A, "phone"), entry(1, B, ""), entry(2, B, "tablet")];

describe("diffRoster", () => {
  it("reads added, removed and kept devices; a device at a new leaf is both removed and added", () => {
    const diff = diffRoster(before, [leaf(0, A, "phone", 9), leaf(1, A, "laptop"), leaf(3, B, "tablet")]);
    expect(diff.added.map((l) => l.identity)).toEqual([`${A}#laptop`, `${B}#tablet`]);
    expect(diff.removed.map((e) => [e.did, e.deviceId])).toEqual([
      [B, ""],
      [B, "tablet"],
    ]);
    expect(diff.kept.map(({ after }) => after.identity)).toEqual([`${A}#phone`]);
  });

  it("refuses a tree holding a device twice", () => {
    expect(() => diffRoster([], [leaf(0, A, "phone"), leaf(1, A, "phone")])).toThrow(/twice/);
  });
});

describe("checkExternalJoin's rule: nothing changes but the joiner's leaf", () => {
  const noCooldown: Queryable = {
    query: async () => [],
    exec: async () => {},
    transaction: (fn) => fn(noCooldown),
  };
  const bundle = { now: new Date(), rejoinCooldownSeconds: 60 } as CommitBundle;
  const join = (leaves: RosterLeaf[], signerLeaf: number) => {
    const info: GroupInfoRead = { groupId: "00", epoch: 1, signerLeaf, leaves };
    return checkExternalJoin(noCooldown, "c", {
      acting: { did: A, deviceId: "laptop" },
      info,
      before,
      diff: diffRoster(before, leaves),
      bundle,
    });
  };
  const unchanged = [leaf(0, A, "phone"), leaf(1, B, ""), leaf(2, B, "tablet")];

  it("accepts the joiner's new leaf alone", async () => {
    const diff = await join([...unchanged, leaf(3, A, "laptop")], 3);
    expect(diff.added.map((l) => l.identity)).toEqual([`${A}#laptop`]);
    expect(diff.removed).toEqual([]);
  });

  it("refuses another device added, removed or re-keyed (RosterMismatch), and a GroupInfo not signed by the new leaf", async () => {
    const cases: [RosterLeaf[], number][] = [
      [[...unchanged, leaf(3, A, "laptop"), leaf(4, B, "watch")], 3],
      [[leaf(0, A, "phone"), leaf(1, B, ""), leaf(3, A, "laptop")], 3],
      [[leaf(0, A, "phone", 7), leaf(1, B, ""), leaf(2, B, "tablet"), leaf(3, A, "laptop")], 3],
    ];
    for (const [leaves, signer] of cases)
      await expect(join(leaves, signer)).rejects.toMatchObject({ error: "RosterMismatch" });
    await expect(join([...unchanged, leaf(3, A, "laptop")], 0)).rejects.toMatchObject({ error: "InvalidGroupInfo" });
  });
});
