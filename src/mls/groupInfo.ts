import { sha256, sha384, sha512 } from "@noble/hashes/sha2";
import { getCiphersuiteFromName, type CiphersuiteName } from "ts-mls/crypto/ciphersuite.js";
import type { Hash } from "ts-mls/crypto/hash.js";
import { ratchetTreeFromExtension, verifyGroupInfoSignature, type GroupInfo } from "ts-mls/groupInfo.js";
import { decodeMlsMessage } from "ts-mls/message.js";
import type { RatchetTree } from "ts-mls/ratchetTree.js";
import { treeHashRoot } from "ts-mls/treeHash.js";
import { invalidGroupInfo, rosterMismatch } from "../errors.js";
import { parseCredentialIdentity } from "../services/actingDevice.js";
import { decodeExactly, toHex, utf8 } from "./decode.js";
import { cipherSuiteName } from "./keyPackage.js";
import { verifiesWith } from "./signature.js";

/** One member leaf of a group's ratchet tree: the device its basic credential names. */
export interface RosterLeaf {
  leafIndex: number;
  /** The credential identity as UTF-8: `<did>#<deviceId>` or the bare DID (the implicit device). */
  identity: string;
  did: string;
  /** "" for the implicit device. */
  deviceId: string;
  signatureKey: Uint8Array;
}

/** What the server reads from a GroupInfo it has checked. */
export interface GroupInfoRead {
  /** The MLS group id as lowercase hex. */
  groupId: string;
  epoch: number;
  /** The leaf index of the member that signed it. */
  signerLeaf: number;
  /** Every non-blank leaf, in leaf order. */
  leaves: RosterLeaf[];
}

/**
 * Reads and checks a GroupInfo (RFC 9420 §12.4.3), framed as an MLSMessage with wire format mls_group_info:
 * of the conversation's cipher suite, with the `ratchet_tree` extension, a tree whose hash is the group context's
 * tree_hash, and signed by the leaf its `signer` names with that leaf's signature key. Every leaf must carry a
 * basic credential naming a DID or a DID's device. 400 InvalidGroupInfo for a malformed or unverifiable one,
 * 400 RosterMismatch for a leaf that names no device; never anything else for any input.
 *
 * It proves the GroupInfo is one consistent, signed whole; not that the signer's key belongs to who it names:
 * callers check the signer against the conversation's known roster.
 */
export async function readGroupInfo(bytes: Uint8Array, cipherSuite: string, maxLeaves: number): Promise<GroupInfoRead> {
  const message = decodeExactly(decodeMlsMessage, bytes);
  if (message?.wireformat !== "mls_group_info") {
    throw invalidGroupInfo("groupInfo must be an MLSMessage with wire format mls_group_info");
  }
  const { groupInfo } = message;
  const { groupContext } = groupInfo;
  const suite = cipherSuiteName(groupContext.cipherSuite);
  if (suite !== cipherSuite) {
    throw invalidGroupInfo(`the GroupInfo uses cipher suite ${suite}; the conversation uses ${cipherSuite}`);
  }
  if (groupContext.epoch > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw invalidGroupInfo(`the GroupInfo's epoch is beyond ${Number.MAX_SAFE_INTEGER}`);
  }
  const tree = ratchetTree(groupInfo);
  // Blank nodes are cheap to decode but each costs a hash: a tree is at most a full binary tree over its leaves.
  const leafCount = tree.reduce((n, node) => (node?.nodeType === "leaf" ? n + 1 : n), 0);
  if (leafCount > maxLeaves || tree.length > 4 * maxLeaves) {
    throw rosterMismatch(`the group holds more than ${maxLeaves} leaves`);
  }
  const algorithms = getCiphersuiteFromName(groupContext.cipherSuite as CiphersuiteName);
  await checkTreeHash(tree, groupContext.treeHash, algorithms.hash);
  const signer = tree[groupInfo.signer * 2];
  if (signer?.nodeType !== "leaf") throw invalidGroupInfo("the GroupInfo's signer is not a leaf of its tree");
  await checkSignature(groupInfo, signer.leaf.signaturePublicKey);
  return {
    groupId: toHex(groupContext.groupId),
    epoch: Number(groupContext.epoch),
    signerLeaf: groupInfo.signer,
    leaves: rosterLeaves(tree),
  };
}

function ratchetTree(groupInfo: GroupInfo): RatchetTree {
  let tree: RatchetTree | undefined;
  try {
    tree = ratchetTreeFromExtension(groupInfo);
  } catch {
    throw invalidGroupInfo("the GroupInfo's ratchet_tree extension does not decode");
  }
  if (!tree) throw invalidGroupInfo("the GroupInfo has no ratchet_tree extension");
  // A tree in array form has an odd number of nodes, leaves at even indices.
  if (tree.length % 2 === 0) throw invalidGroupInfo("the GroupInfo's ratchet tree is malformed");
  tree.forEach((node, index) => {
    if (node && (node.nodeType === "leaf") !== (index % 2 === 0)) {
      throw invalidGroupInfo("the GroupInfo's ratchet tree is malformed");
    }
  });
  return tree;
}

async function checkTreeHash(tree: RatchetTree, expected: Uint8Array, algorithm: "SHA-256" | "SHA-384" | "SHA-512") {
  let actual: Uint8Array;
  try {
    actual = await treeHashRoot(tree, digestOnly(algorithm));
  } catch {
    throw invalidGroupInfo("the GroupInfo's ratchet tree cannot be hashed");
  }
  if (!equalBytes(actual, expected)) {
    throw invalidGroupInfo("the GroupInfo's ratchet tree does not match its group context's tree_hash");
  }
}

/**
 * A tree hash takes one digest per node: @noble/hashes digests synchronously, a few microseconds each, where a
 * WebCrypto call costs tens (a 4,400-leaf tree: ~600 ms of event loop through WebCrypto). Only digest is used.
 */
function digestOnly(algorithm: "SHA-256" | "SHA-384" | "SHA-512"): Hash {
  const digest = { "SHA-256": sha256, "SHA-384": sha384, "SHA-512": sha512 }[algorithm];
  const unused = () => Promise.reject(new Error("the tree hash needs no MAC"));
  return { digest: async (data) => digest(data), mac: unused, verifyMac: unused };
}

async function checkSignature(groupInfo: GroupInfo, publicKey: Uint8Array) {
  const valid = await verifiesWith(groupInfo.groupContext.cipherSuite, (signature) =>
    verifyGroupInfoSignature(groupInfo, publicKey, signature),
  );
  if (!valid) throw invalidGroupInfo("the GroupInfo's signature does not verify with its signer leaf's key");
}

function rosterLeaves(tree: RatchetTree): RosterLeaf[] {
  const leaves: RosterLeaf[] = [];
  for (let index = 0; index < tree.length; index += 2) {
    const node = tree[index];
    if (node?.nodeType !== "leaf") continue;
    const { credential, signaturePublicKey } = node.leaf;
    const leafIndex = index / 2;
    const identity = credential.credentialType === "basic" ? utf8(credential.identity) : undefined;
    const device = identity === undefined ? undefined : parseCredentialIdentity(identity);
    if (identity === undefined || !device) {
      throw rosterMismatch(`leaf ${leafIndex} has no basic credential naming a DID or a DID's device`);
    }
    leaves.push({ leafIndex, identity, ...device, signatureKey: signaturePublicKey });
  }
  return leaves;
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}
