/**
 * PROVISIONAL (h/roster): stands in for the lead's src/mls/groupInfo.ts until it lands on main, with the
 * interface the brief gives; on merge main's version replaces this file.
 */
import { getCiphersuiteFromName, type CiphersuiteName } from "ts-mls/crypto/ciphersuite.js";
import { getCiphersuiteImpl } from "ts-mls/crypto/getCiphersuiteImpl.js";
import { ratchetTreeFromExtension, verifyGroupInfoSignature } from "ts-mls/groupInfo.js";
import { decodeMlsMessage } from "ts-mls/message.js";
import { invalidGroupInfo, rosterMismatch } from "../errors.js";
import { parseCredentialIdentity } from "../services/actingDevice.js";
import { decodeExactly } from "./decode.js";
import { cipherSuiteName } from "./keyPackage.js";

export interface GroupInfoLeaf {
  leafIndex: number;
  identity: string;
  did: string;
  deviceId: string;
  signatureKey: Uint8Array;
}

export interface GroupInfoRead {
  /** Lowercase hex. */
  groupId: string;
  epoch: number;
  signerLeaf: number;
  leaves: GroupInfoLeaf[];
}

const hex = (bytes: Uint8Array) => Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");

export async function readGroupInfo(bytes: Uint8Array, cipherSuite: string): Promise<GroupInfoRead> {
  const message = decodeExactly(decodeMlsMessage, bytes);
  if (message?.wireformat !== "mls_group_info") {
    throw invalidGroupInfo("groupInfo must be exactly one MLSMessage with wire format mls_group_info");
  }
  const info = message.groupInfo;
  if (cipherSuiteName(info.groupContext.cipherSuite) !== cipherSuite) {
    throw invalidGroupInfo(`the GroupInfo's cipher suite is not the conversation's (${cipherSuite})`);
  }
  if (info.groupContext.epoch > BigInt(Number.MAX_SAFE_INTEGER)) throw invalidGroupInfo("the GroupInfo's epoch is too large");
  let tree;
  try {
    tree = ratchetTreeFromExtension(info);
  } catch {
    throw invalidGroupInfo("the GroupInfo's ratchet_tree extension does not decode");
  }
  if (!tree) throw invalidGroupInfo("the GroupInfo has no ratchet_tree extension");
  const signer = tree[info.signer * 2];
  if (signer?.nodeType !== "leaf") throw invalidGroupInfo("the GroupInfo's signer is no leaf of its tree");
  let valid = false;
  try {
    const impl = await getCiphersuiteImpl(getCiphersuiteFromName(cipherSuite as CiphersuiteName));
    valid = await verifyGroupInfoSignature(info, signer.leaf.signaturePublicKey, impl.signature);
  } catch {
    valid = false;
  }
  if (!valid) throw invalidGroupInfo("the GroupInfo's signature does not verify with its signer's key");
  const leaves: GroupInfoLeaf[] = [];
  tree.forEach((node, index) => {
    if (node?.nodeType !== "leaf" || index % 2 !== 0) return;
    const credential = node.leaf.credential;
    let identity: string | undefined;
    if (credential.credentialType === "basic") {
      try {
        identity = new TextDecoder("utf-8", { fatal: true }).decode(credential.identity);
      } catch {
        identity = undefined;
      }
    }
    const named = identity === undefined ? undefined : parseCredentialIdentity(identity);
    if (!named) throw rosterMismatch(`leaf ${index / 2} names no DID or device`);
    leaves.push({ leafIndex: index / 2, identity: identity!, ...named, signatureKey: node.leaf.signaturePublicKey });
  });
  return { groupId: hex(info.groupContext.groupId), epoch: Number(info.groupContext.epoch), signerLeaf: info.signer, leaves };
}
