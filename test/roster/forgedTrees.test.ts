/**
 * GroupInfos a member forges: a tree hash and signature that verify (the forger signs with its own leaf), but a
 * tree the commit did not make. The server cannot tell a PrivateMessage commit's real tree from the GroupInfo's,
 * so what such a tree may change is exactly what its committer may change.
 */
import { afterAll, describe, expect, it } from "vitest";
import { encodeMlsMessage } from "ts-mls/message.js";
import type { RatchetTree } from "ts-mls/ratchetTree.js";
import { testApp, testDatabase } from "../helpers/context.js";
import { alteredLeaf, forgeGroupInfo } from "../helpers/forgedGroupInfo.js";
import { b64, RosterGroup, type Bundle, type Device, type Member } from "../helpers/rosterGroup.js";
import { expectReply, Xrpc } from "../messaging/client.js";
import { bundleBody, commitBundle, device, epochOf, newDid, publisher, register, rosterConvo } from "./fixtures.js";

const db = testDatabase();
afterAll(() => db.close());
const api = new Xrpc(testApp(db).app);

/** Alice (creator: phone, laptop) and Bob (phone) in a roster-checked conversation. */
async function aliceAndBob() {
  const alice = newDid("alice");
  const bob = newDid("bob");
  const alicePhone = device(alice, "phone");
  const aliceLaptop = device(alice, "laptop");
  const bobPhone = device(bob, "phone");
  await register(db, alicePhone, aliceLaptop, bobPhone);
  const { group, convoId } = await rosterConvo(api, alicePhone, [aliceLaptop, bobPhone]);
  return { alice, bob, alicePhone, aliceLaptop, bobPhone, group, convoId };
}

/** `bundle` with its GroupInfo's tree edited by `forger`, re-hashed and signed with the forger's own leaf key. */
const forged = async (bundle: Bundle, forger: Member, edit: (tree: RatchetTree) => RatchetTree) =>
  b64(await forgeGroupInfo(bundle.groupInfo, forger.state.signaturePrivateKey, edit));

/** Replaces the signature key of `leafIndex`'s leaf (its leaf signature goes stale; the server never reads it). */
const rekey = (leafIndex: number, signaturePublicKey: Uint8Array) => (tree: RatchetTree) => {
  const node = tree[leafIndex * 2];
  if (node?.nodeType !== "leaf") throw new Error(`no leaf at ${leafIndex}`);
  tree[leafIndex * 2] = alteredLeaf(node.leaf, { signaturePublicKey });
  return tree;
};

async function rosterKey(convoId: string, { did, deviceId }: Device): Promise<string> {
  const [row] = await db.query<{ key: string }>(
    `SELECT encode(signature_key, 'hex') AS key FROM roster WHERE convo_id = $1 AND did = $2 AND device_id = $3`,
    [convoId, did, deviceId],
  );
  return row!.key;
}

describe("a forged tree changes no other device's signature key", () => {
  it("a member who re-keys another DID's device to its own key: 400 RosterMismatch, and that device still commits", async () => {
    const { bob, aliceLaptop, bobPhone, group, convoId } = await aliceAndBob();
    const bobMember = group.member(bobPhone);
    const laptopKey = await rosterKey(convoId, aliceLaptop);
    const bundle = await group.commit(bobPhone);
    const groupInfo = await forged(
      bundle,
      bobMember,
      rekey(group.member(aliceLaptop).leafIndex, bobMember.keys.publicPackage.leafNode.signaturePublicKey),
    );
    const reply = await api.post(bob, "processCommit", bundleBody(convoId, bundle, bobPhone, { groupInfo }));
    expectReply(reply, 400, "RosterMismatch");
    expect(await epochOf(db, convoId)).toBe(1);
    expect(await rosterKey(convoId, aliceLaptop)).toBe(laptopKey);
    // Had it been accepted, the laptop's own GroupInfos would no longer match "its" key: it could never commit again.
    expectReply(await commitBundle(api, convoId, await group.commit(aliceLaptop), aliceLaptop), 200);
  });

  it("a kept leaf may take a key its own device published (an update of that leaf)", async () => {
    const { bob, aliceLaptop, bobPhone, group, convoId } = await aliceAndBob();
    const fresh = await RosterGroup.keyPair(aliceLaptop);
    const newKey = fresh.publicPackage.leafNode.signaturePublicKey;
    const bundle = await group.commit(bobPhone);
    const groupInfo = await forged(bundle, group.member(bobPhone), rekey(group.member(aliceLaptop).leafIndex, newKey));
    const body = bundleBody(convoId, bundle, bobPhone, { groupInfo });
    expectReply(await api.post(bob, "processCommit", body), 400, "RosterMismatch");
    await publisher(api)(
      aliceLaptop,
      encodeMlsMessage({ version: "mls10", wireformat: "mls_key_package", keyPackage: fresh.publicPackage }),
    );
    expectReply(await api.post(bob, "processCommit", body), 200);
    expect(await rosterKey(convoId, aliceLaptop)).toBe(Buffer.from(newKey).toString("hex"));
  });
});
