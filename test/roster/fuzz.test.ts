/**
 * Mangled commit bundles: random, truncated, bit-flipped and swapped GroupInfo, commit and Welcome bytes, oversized
 * and malformed fields, through processCommit, addMembers, leaveConvo and createConvo. No answer is a 5xx (the
 * client checks every reply), and every refusal is one of the contract's names.
 *
 * A bit flip inside a PrivateMessage commit's ciphertext still frames a commit: the server cannot tell (it has no
 * group secrets), so such a bundle may be accepted with the valid GroupInfo. The test then starts over on a fresh
 * conversation.
 */
import { afterAll, describe, expect, it } from "vitest";
import { testApp, testDatabase } from "../helpers/context.js";
import { b64, RosterGroup, SUITE } from "../helpers/rosterGroup.js";
import { randomBytes, Xrpc, type Reply } from "../messaging/client.js";
import { bundleBody, device, newDid, register, rosterConvo } from "./fixtures.js";

const MAX_BYTES = 64 * 1024;
const db = testDatabase();
afterAll(() => db.close());
const api = new Xrpc(testApp(db, { MAX_CIPHERTEXT_BYTES: String(MAX_BYTES), RATE_LIMIT_PER_DID: "0" }).app);

const REFUSALS = new Set([
  "InvalidRequest",
  "InvalidCommit",
  "InvalidGroupInfo",
  "RosterMismatch",
  "EpochMismatch",
  "NotMember",
  "NotCreator",
  "UnknownDevice",
  "TooManyMembers",
]);

function expectHandled(reply: Reply, label: string): void {
  if (reply.status === 200) return;
  expect(REFUSALS.has(reply.body.error), `${label}: ${JSON.stringify(reply.body)}`).toBe(true);
}

/** Alice's phone and Bob's phone in a fresh conversation, and a valid bundle adding Bob's tablet. */
async function fresh() {
  const alice = newDid("alice");
  const bob = newDid("bob");
  const phone = device(alice, "phone");
  await register(db, phone, device(bob, "phone"), device(bob, "tablet"));
  const { group, convoId } = await rosterConvo(api, phone, [device(bob, "phone")]);
  const bundle = await group.commit(phone, { add: [device(bob, "tablet")] });
  return { alice, bob, phone, group, convoId, bundle };
}

/** Truncations, bit flips, random bytes of the same length, a trailing byte, and empty. */
function mangled(bytes: Uint8Array, flips: number): Uint8Array[] {
  const out: Uint8Array[] = [new Uint8Array(0), Uint8Array.from([...bytes, 0]), randomBytes(bytes.length)];
  const step = Math.max(1, Math.floor(bytes.length / 25));
  for (let cut = 1; cut < bytes.length; cut += step) out.push(bytes.subarray(0, cut));
  for (let i = 0; i < flips; i++) {
    const flipped = Uint8Array.from(bytes);
    flipped[Math.floor(Math.random() * flipped.length)]! ^= 1 << Math.floor(Math.random() * 8);
    out.push(flipped);
  }
  return out;
}

describe("mangled commit bundles never get a 5xx", () => {
  it("processCommit with mangled GroupInfo, commit and Welcome bytes", async () => {
    let state = await fresh();
    const send = async (field: "groupInfo" | "commit" | "welcomeMessage", bytes: Uint8Array) => {
      const body = { ...bundleBody(state.convoId, state.bundle, state.phone), [field]: b64(bytes) };
      const reply = await api.post(state.alice, "processCommit", body);
      expectHandled(reply, field);
      if (reply.status === 200) state = await fresh();
    };
    for (const bytes of mangled(state.bundle.groupInfo, 120)) await send("groupInfo", bytes);
    for (const bytes of mangled(state.bundle.commit, 60)) await send("commit", bytes);
    for (const bytes of mangled(state.bundle.welcome!, 40)) await send("welcomeMessage", bytes);
    // The other artefacts in each other's places.
    const { commit, groupInfo, welcome } = state.bundle;
    for (const [field, bytes] of [
      ["groupInfo", commit],
      ["groupInfo", welcome!],
      ["commit", groupInfo],
      ["commit", welcome!],
      ["welcomeMessage", groupInfo],
      ["welcomeMessage", commit],
    ] as const) {
      await send(field, bytes);
    }
  });

  it("oversized and malformed fields", async () => {
    const { alice, bob, phone, convoId, bundle } = await fresh();
    const body = bundleBody(convoId, bundle, phone);
    const cases: Record<string, unknown>[] = [
      { groupInfo: b64(randomBytes(MAX_BYTES + 1)) },
      { commit: b64(randomBytes(MAX_BYTES + 1)) },
      { groupInfo: "" },
      { groupInfo: "not base64!" },
      { groupInfo: { $bytes: 7 } },
      { groupInfo: null },
      { epoch: -1 },
      { epoch: 2 ** 60 },
      { deviceId: "" },
      { deviceId: "x".repeat(65) },
      { deviceId: "a b" },
      { keyPackageHashes: "nope" },
      { keyPackageHashes: [{ did: bob, deviceId: "a#b", hash: "0".repeat(64) }] },
      { keyPackageHashes: Array.from({ length: 10_001 }, () => ({ did: bob, hash: "0".repeat(64) })) },
      // Within the parse bound: judged against the roster change in linear time.
      {
        keyPackageHashes: Array.from({ length: 10_000 }, (_, i) => ({
          did: bob,
          deviceId: `d${i}`,
          hash: "0".repeat(64),
        })),
      },
      { convoId: "x".repeat(129) },
    ];
    for (const change of cases) {
      const reply = await api.post(alice, "processCommit", { ...body, ...change });
      expect(reply.status, JSON.stringify(change).slice(0, 100)).toBe(400);
      expectHandled(reply, JSON.stringify(change).slice(0, 100));
    }
  });

  it("addMembers, leaveConvo and createConvo with mangled GroupInfos", async () => {
    let state = await fresh();
    const gi = state.bundle.groupInfo;
    for (const bytes of mangled(gi, 40)) {
      const common = {
        convoId: state.convoId,
        commit: b64(state.bundle.commit),
        epoch: 1,
        groupInfo: b64(bytes),
        deviceId: "phone",
      };
      const added = await api.post(state.alice, "addMembers", { ...common, didList: [state.bob] });
      expectHandled(added, "addMembers");
      if (added.status === 200) state = await fresh();
      const left = await api.post(state.alice, "leaveConvo", {
        ...common,
        convoId: state.convoId,
        targetDid: state.bob,
      });
      expectHandled(left, "leaveConvo");
    }
    const group = await RosterGroup.create(device(state.alice, "phone"));
    const valid = await group.groupInfo(device(state.alice, "phone"));
    for (const bytes of mangled(valid, 60)) {
      const reply = await api.post(state.alice, "createConvo", {
        groupId: group.groupIdHex,
        cipherSuite: SUITE,
        groupInfo: b64(bytes),
        deviceId: "phone",
      });
      expectHandled(reply, "createConvo");
    }
  });
});
