/**
 * Real RFC 9420 artefacts made with ts-mls, for tests that need bytes a client would send.
 * All use cipher suite 1 (MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519, WebCrypto X25519/Ed25519): a group with a
 * commit takes tens of milliseconds.
 *
 * Imports are per module: the root "ts-mls" entry (1.6.x) also loads its noble crypto provider, which imports
 * @noble/hashes, a package ts-mls does not declare.
 */
import type { Credential, Lifetime } from "ts-mls";
import { createGroup, type ClientState } from "ts-mls/clientState.js";
import { createCommit, createGroupInfoWithExternalPub } from "ts-mls/createCommit.js";
import { createApplicationMessage } from "ts-mls/createMessage.js";
import { getCiphersuiteFromName, type CiphersuiteImpl } from "ts-mls/crypto/ciphersuite.js";
import { getCiphersuiteImpl } from "ts-mls/crypto/getCiphersuiteImpl.js";
import { defaultCapabilities } from "ts-mls/defaultCapabilities.js";
import { generateKeyPackage } from "ts-mls/keyPackage.js";
import { defaultLifetime } from "ts-mls/lifetime.js";
import { encodeMlsMessage } from "ts-mls/message.js";

export const TEST_CIPHER_SUITE = "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519";

let suite: Promise<CiphersuiteImpl> | undefined;
const cipherSuite = () => (suite ??= getCiphersuiteImpl(getCiphersuiteFromName(TEST_CIPHER_SUITE)));

const basicCredential = (did: string): Credential => ({
  credentialType: "basic",
  identity: new TextEncoder().encode(did),
});

/** A lifetime in whole Unix seconds, as a KeyPackage carries it. */
export const lifetime = (notBefore: Date, notAfter: Date): Lifetime => ({
  notBefore: BigInt(Math.floor(notBefore.getTime() / 1000)),
  notAfter: BigInt(Math.floor(notAfter.getTime() / 1000)),
});

async function generate(did: string, keyLifetime: Lifetime) {
  return generateKeyPackage(basicCredential(did), defaultCapabilities(), keyLifetime, [], await cipherSuite());
}

/**
 * An MLSMessage (wire format mls_key_package) holding a fresh KeyPackage with a basic credential whose identity is
 * `did`. Without `keyLifetime` it uses ts-mls's default: notBefore 0, notAfter 2^63 − 1 seconds.
 */
export async function makeKeyPackage(
  did = "did:plc:test",
  keyLifetime: Lifetime = defaultLifetime,
): Promise<Uint8Array> {
  const { publicPackage } = await generate(did, keyLifetime);
  return encodeMlsMessage({ version: "mls10", wireformat: "mls_key_package", keyPackage: publicPackage });
}

export interface GroupWithCommit {
  /** The MLS group id as lowercase hex. */
  groupIdHex: string;
  /** The creator's commit adding the member, sent in epoch 0 (`commitEpoch`); it moves the group to epoch 1. */
  commitBytes: Uint8Array;
  commitEpoch: number;
  /** The Welcome for the added member. */
  welcomeBytes: Uint8Array;
  /** The member's KeyPackage that the commit consumed, as an MLSMessage. */
  keyPackageBytes: Uint8Array;
  /** An application message from the creator in epoch 1 (a PrivateMessage). */
  appMessageBytes: Uint8Array;
  /** A GroupInfo (with external_pub) for epoch 1. */
  groupInfoBytes: Uint8Array;
  /** The creator's state in epoch 1, for tests that go on to commit again with ts-mls. */
  creatorState: ClientState;
}

export interface GroupOptions {
  /** Lowercase hex; 16 random bytes when left out. */
  groupIdHex?: string;
  creatorDid?: string;
  memberDid?: string;
  /** Frame the commit as a PublicMessage; ts-mls's default (and this helper's) is a PrivateMessage. */
  publicCommit?: boolean;
}

/** A two-member group: the creator makes the group, adds the member with a commit and sends one message. */
export async function makeGroupWithCommit(options: GroupOptions = {}): Promise<GroupWithCommit> {
  const { creatorDid = "did:plc:creator", memberDid = "did:plc:member", publicCommit = false } = options;
  const impl = await cipherSuite();
  const groupId = options.groupIdHex ? hexToBytes(options.groupIdHex) : crypto.getRandomValues(new Uint8Array(16));
  const creator = await generate(creatorDid, defaultLifetime);
  const member = await generate(memberDid, defaultLifetime);

  const initial = await createGroup(groupId, creator.publicPackage, creator.privatePackage, [], impl);
  const { commit, welcome, newState } = await createCommit(
    { state: initial, cipherSuite: impl },
    {
      wireAsPublicMessage: publicCommit,
      extraProposals: [{ proposalType: "add", add: { keyPackage: member.publicPackage } }],
    },
  );
  if (!welcome) throw new Error("ts-mls made no Welcome for an add");
  const message = await createApplicationMessage(newState, new TextEncoder().encode("hello"), impl);
  const groupInfo = await createGroupInfoWithExternalPub(message.newState, [], impl);

  return {
    groupIdHex: bytesToHex(groupId),
    commitBytes: encodeMlsMessage(commit),
    commitEpoch: Number(initial.groupContext.epoch),
    welcomeBytes: encodeMlsMessage({ version: "mls10", wireformat: "mls_welcome", welcome }),
    keyPackageBytes: encodeMlsMessage({
      version: "mls10",
      wireformat: "mls_key_package",
      keyPackage: member.publicPackage,
    }),
    appMessageBytes: encodeMlsMessage({
      version: "mls10",
      wireformat: "mls_private_message",
      privateMessage: message.privateMessage,
    }),
    groupInfoBytes: encodeMlsMessage({ version: "mls10", wireformat: "mls_group_info", groupInfo }),
    creatorState: message.newState,
  };
}

const bytesToHex = (bytes: Uint8Array) => Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
const hexToBytes = (hex: string) => Uint8Array.from(hex.match(/../g) ?? [], (pair) => parseInt(pair, 16));
