/**
 * GroupInfos a member forges: a tree hash and signature that verify (the forger signs with its own leaf), but a
 * tree the commit did not make. The server cannot tell a PrivateMessage commit's real tree from the GroupInfo's,
 * so what such a tree may change is exactly what its committer may change.
 */
import { afterAll, describe, expect, it } from "vitest";
import { encodeMlsMessage } from "ts-mls/message.js";
import type { LeafNode } from "ts-mls/leafNode.js";
import type { RatchetTree } from "ts-mls/ratchetTree.js";
import { testApp, testDatabase } from "../helpers/context.js";
import { alteredLeaf, basicCredential, forgeGroupInfo } from "../helpers/forgedGroupInfo.js";
import { RosterGroup, SUITE, type Bundle, type Device, type Member } from "../helpers/rosterGroup.js";
import { Api, expectOutcome, messageOf, randomBytes } from "../messaging/client.js";
import {
  bundleInput,
  commitBundle,
  device,
  epochOf,
  newDid,
  publisher,
  register,
  storedRoster,
  aliceAndBob as fixtureAliceAndBob,
} from "./fixtures.js";

const db = testDatabase();
afterAll(() => db.close());
const api = new Api(testApp(db).app);

const aliceAndBob = () => fixtureAliceAndBob(db, api);

/** `bundle` with its GroupInfo's tree edited by `forger`, re-hashed and signed with the forger's own leaf key. */
const forged = async (bundle: Bundle, forger: Member, edit: (tree: RatchetTree) => RatchetTree) =>
  await forgeGroupInfo(bundle.groupInfo, forger.state.signaturePrivateKey, edit);

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
    const reply = await api.call(bob, "processCommit", bundleInput(convoId, bundle, bobPhone, { groupInfo }));
    expectOutcome(reply, 400, "RosterMismatch");
    expect(await epochOf(db, convoId)).toBe(1);
    expect(await rosterKey(convoId, aliceLaptop)).toBe(laptopKey);
    // Had it been accepted, the laptop's own GroupInfos would no longer match "its" key: it could never commit again.
    expectOutcome(await commitBundle(api, convoId, await group.commit(aliceLaptop), aliceLaptop), 200);
  });

  it("a kept leaf may take a key its own device published (an update of that leaf)", async () => {
    const { bob, aliceLaptop, bobPhone, group, convoId } = await aliceAndBob();
    const fresh = await RosterGroup.keyPair(aliceLaptop);
    const newKey = fresh.publicPackage.leafNode.signaturePublicKey;
    const bundle = await group.commit(bobPhone);
    const groupInfo = await forged(bundle, group.member(bobPhone), rekey(group.member(aliceLaptop).leafIndex, newKey));
    const body = bundleInput(convoId, bundle, bobPhone, { groupInfo });
    expectOutcome(await api.call(bob, "processCommit", body), 400, "RosterMismatch");
    await publisher(api)(
      aliceLaptop,
      encodeMlsMessage({ version: "mls10", wireformat: "mls_key_package", keyPackage: fresh.publicPackage }),
    );
    expectOutcome(await api.call(bob, "processCommit", body), 200);
    expect(await rosterKey(convoId, aliceLaptop)).toBe(Buffer.from(newKey).toString("hex"));
  });
});

/** A leaf changed in one field, at random, into something hostile that still encodes. */
function hostileLeaf(leaf: LeafNode, pick: number): LeafNode {
  const bytes = (n: number) => randomBytes(n);
  const changes: Partial<LeafNode>[] = [
    { hpkePublicKey: bytes(0) },
    { hpkePublicKey: bytes(300) },
    { signaturePublicKey: bytes(0) },
    { signaturePublicKey: bytes(33) },
    { signaturePublicKey: bytes(2000) },
    { credential: { credentialType: "basic", identity: bytes(40) } },
    { credential: { credentialType: "basic", identity: new Uint8Array(0) } },
    { credential: basicCredential(`did:plc:${"a".repeat(3000)}`) },
    { credential: basicCredential("did:plc:x\u0000#a") },
    { credential: basicCredential("did:plc:x#") },
    { credential: basicCredential("did:plc:x#a#b") },
    { credential: { credentialType: "x509", certificates: [bytes(10)] } } as Partial<LeafNode>,
    { extensions: [{ extensionType: 0xbeef, extensionData: bytes(5000) }] } as Partial<LeafNode>,
    { signature: bytes(3000) },
  ];
  return { ...leaf, ...changes[pick % changes.length] } as LeafNode;
}

describe("hostile but well-formed GroupInfos", () => {
  it("forged trees and group contexts through processCommit and createConvo: never a 5xx, never a roster change", async () => {
    const setup = async () => {
      const { bob, bobPhone, group, convoId } = await aliceAndBob();
      const bundle = await group.commit(bobPhone);
      return { bob, bobPhone, convoId, bundle, forger: group.member(bobPhone) };
    };
    let state = await setup();
    const variants: [string, (tree: RatchetTree) => RatchetTree, Parameters<typeof forgeGroupInfo>[3]?][] = [];
    for (let i = 0; i < 42; i++) {
      variants.push([
        `leaf ${i % 3} change ${i}`,
        (tree) => {
          const node = tree[(i % 3) * 2];
          if (node?.nodeType === "leaf") tree[(i % 3) * 2] = { nodeType: "leaf", leaf: hostileLeaf(node.leaf, i) };
          return tree;
        },
      ]);
    }
    const same = (tree: RatchetTree) => tree;
    variants.push(
      ["signer beyond the tree", same, { signer: 0xffffffff }],
      ["signer on a parent's index", same, { signer: 1 }],
      ["another suite", same, { context: { cipherSuite: "MLS_128_DHKEMP256_AES128GCM_SHA256_P256" } }],
      ["epoch 2^64 - 1", same, { context: { epoch: 2n ** 64n - 1n } }],
      ["empty group id", same, { context: { groupId: new Uint8Array(0) } }],
      ["a 5000-byte group id", same, { context: { groupId: randomBytes(5000) } }],
      [
        "a parent with 5000 unmerged leaves",
        (tree) => {
          tree[1] = {
            nodeType: "parent",
            parent: {
              hpkePublicKey: randomBytes(32),
              parentHash: randomBytes(32),
              unmergedLeaves: [...Array(5000).keys()],
            },
          };
          return tree;
        },
      ],
      ["only the first leaf", (tree) => [tree[0]]],
    );
    for (const [label, edit, options] of variants) {
      const before = await storedRoster(db, state.convoId);
      const groupInfo = await forgeGroupInfo(
        state.bundle.groupInfo,
        state.forger.state.signaturePrivateKey,
        edit,
        options,
      );
      const reply = await api.call(
        state.bob,
        "processCommit",
        bundleInput(state.convoId, state.bundle, state.bobPhone, { groupInfo }),
      );
      expect(reply.status, `${label}: ${JSON.stringify(reply.data)}`).toBeLessThan(500);
      if (reply.status === 200) {
        // Only what the server does not read (HPKE keys, extensions, leaf signatures) may differ.
        expect(await storedRoster(db, state.convoId), label).toEqual(before);
        state = await setup();
      } else {
        expect(["InvalidGroupInfo", "RosterMismatch"], `${label}: ${JSON.stringify(reply.data)}`).toContain(
          reply.error,
        );
      }
    }
    for (const [label, edit, options] of variants) {
      const alice = newDid("alice");
      const phone = device(alice, "phone");
      await register(db, phone);
      const group = await RosterGroup.create(phone);
      const groupInfo = await forgeGroupInfo(
        await group.groupInfo(phone),
        group.member(phone).state.signaturePrivateKey,
        edit,
        options,
      );
      const reply = await api.call(alice, "createConvo", {
        groupId: group.groupIdHex,
        cipherSuite: SUITE,
        groupInfo: groupInfo,
        deviceId: "phone",
      });
      expect(reply.status, `createConvo ${label}: ${JSON.stringify(reply.data)}`).toBeLessThan(500);
    }
  });
});

describe("the size of a tree", () => {
  it("createConvo refuses a tree with more leaves than a new conversation can hold, before hashing it", async () => {
    const alice = newDid("alice");
    const phone = device(alice, "phone");
    await register(db, phone);
    const group = await RosterGroup.create(phone);
    // 1 + 100 initial members, each with MAX_DEVICES_PER_DID (10) devices and its implicit one: 1,111 leaves at most.
    const crowded = await forgeGroupInfo(
      await group.groupInfo(phone),
      group.member(phone).state.signaturePrivateKey,
      (tree) => {
        const creator = tree[0];
        if (creator?.nodeType !== "leaf") throw new Error("no creator leaf");
        const out = [...tree];
        for (let i = 1; i < 1_112; i++) {
          out[2 * i - 1] = undefined;
          out[2 * i] = {
            nodeType: "leaf",
            leaf: { ...creator.leaf, credential: basicCredential(`did:plc:crowd${i}`) },
          };
        }
        return out;
      },
    );
    const reply = await api.call(alice, "createConvo", {
      groupId: group.groupIdHex,
      cipherSuite: SUITE,
      groupInfo: crowded,
      deviceId: "phone",
    });
    expectOutcome(reply, 400, "RosterMismatch");
    expect(messageOf(reply)).toMatch(/more than 1111 leaves/);
  });
});
