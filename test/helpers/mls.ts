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
import { createApplicationMessage, createProposal } from "ts-mls/createMessage.js";
import { getCiphersuiteFromName, type CiphersuiteImpl, type CiphersuiteName } from "ts-mls/crypto/ciphersuite.js";
import { getCiphersuiteImpl } from "ts-mls/crypto/getCiphersuiteImpl.js";
import { defaultCapabilities } from "ts-mls/defaultCapabilities.js";
import { generateKeyPackage } from "ts-mls/keyPackage.js";
import { defaultLifetime } from "ts-mls/lifetime.js";
import { decodeMlsMessage, encodeMlsMessage } from "ts-mls/message.js";
import type { Proposal } from "ts-mls/proposal.js";

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

async function generate(who: string | Credential, keyLifetime: Lifetime, impl?: CiphersuiteImpl) {
  const credential = typeof who === "string" ? basicCredential(who) : who;
  return generateKeyPackage(credential, defaultCapabilities(), keyLifetime, [], impl ?? (await cipherSuite()));
}

/** ts-mls's implementation of a suite, or undefined when it needs a package not installed (X448, ChaCha20). */
async function suiteImpl(name: CiphersuiteName): Promise<CiphersuiteImpl | undefined> {
  try {
    return await getCiphersuiteImpl(getCiphersuiteFromName(name));
  } catch {
    return undefined;
  }
}

export interface KeyPackageOptions {
  /** Replaces the basic credential naming the DID. */
  credential?: Credential;
  /**
   * The cipher suite of the KeyPackage: generated with it where ts-mls can (suites 1, 2, 5, 7); any other name
   * relabels a suite-1 package, so its signatures no longer verify.
   */
  cipherSuite?: CiphersuiteName;
}

/**
 * An MLSMessage (wire format mls_key_package) holding a fresh KeyPackage with a basic credential whose identity is
 * `did`. Without `keyLifetime` it uses ts-mls's default: notBefore 0, notAfter 2^63 − 1 seconds.
 */
export async function makeKeyPackage(
  did = "did:plc:test",
  keyLifetime: Lifetime = defaultLifetime,
  { credential = basicCredential(did), cipherSuite: claimed = TEST_CIPHER_SUITE }: KeyPackageOptions = {},
): Promise<Uint8Array> {
  const impl = await suiteImpl(claimed);
  const { publicPackage } = await generate(credential, keyLifetime, impl);
  return encodeMlsMessage({
    version: "mls10",
    wireformat: "mls_key_package",
    keyPackage: impl ? publicPackage : { ...publicPackage, cipherSuite: claimed },
  });
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

export interface TestCommitOptions {
  /** DIDs to add, each with a fresh KeyPackage (tens of milliseconds each); none makes an empty commit. */
  add?: string[];
  /** Frame the commit as a PublicMessage instead of ts-mls's default PrivateMessage. */
  publicMessage?: boolean;
}

/**
 * A real ts-mls group held by its creator, for tests that need real commits for successive epochs of one group
 * (the server reads only their framing, so the group need not hold the conversation's members).
 *
 * @example
 * const group = await TestGroup.create();
 * const convoId = await api.createConvo(alice, [bob], { groupId: group.groupIdHex });
 * await api.post(alice, "addMembers", { convoId, didList: [carol], commit: base64(await group.commit()) });
 */
export class TestGroup {
  private constructor(
    readonly groupIdHex: string,
    private state: ClientState,
    private readonly impl: CiphersuiteImpl,
  ) {}

  /** A one-member group in epoch 0: an empty commit costs a few milliseconds. */
  static async create(options: { groupIdHex?: string; creatorDid?: string } = {}): Promise<TestGroup> {
    const impl = await cipherSuite();
    const groupId = options.groupIdHex ? hexToBytes(options.groupIdHex) : crypto.getRandomValues(new Uint8Array(16));
    const creator = await generate(options.creatorDid ?? "did:plc:creator", defaultLifetime);
    const state = await createGroup(groupId, creator.publicPackage, creator.privatePackage, [], impl);
    return new TestGroup(bytesToHex(groupId), state, impl);
  }

  /** The group's current epoch: the one the next commit is sent in. */
  get epoch(): number {
    return Number(this.state.groupContext.epoch);
  }

  /** The commit for the current epoch; the group moves on to the next. */
  async commit(options: TestCommitOptions = {}): Promise<Uint8Array> {
    const { commit, newState } = await this.createCommit(options);
    this.state = newState;
    return encodeMlsMessage(commit);
  }

  /** Commits for `count` successive epochs from the current one, in order. */
  async commits(count: number, options: TestCommitOptions = {}): Promise<Uint8Array[]> {
    const commits: Uint8Array[] = [];
    for (let i = 0; i < count; i++) commits.push(await this.commit(options));
    return commits;
  }

  /** A commit for the current epoch that the group does not adopt: each call is a different rival for the same epoch. */
  async rivalCommit(options: TestCommitOptions = {}): Promise<Uint8Array> {
    return encodeMlsMessage((await this.createCommit(options)).commit);
  }

  /** An application message (a PrivateMessage) in the current epoch. */
  async application(text = "hello"): Promise<Uint8Array> {
    const message = await createApplicationMessage(this.state, new TextEncoder().encode(text), this.impl);
    this.state = message.newState;
    return encodeMlsMessage({
      version: "mls10",
      wireformat: "mls_private_message",
      privateMessage: message.privateMessage,
    });
  }

  /** A proposal (an empty group_context_extensions one) in the current epoch; the group does not keep it pending. */
  async proposal(options: { publicMessage?: boolean } = {}): Promise<Uint8Array> {
    const proposal: Proposal = { proposalType: "group_context_extensions", groupContextExtensions: { extensions: [] } };
    const { message } = await createProposal(this.state, options.publicMessage ?? false, proposal, this.impl);
    return encodeMlsMessage(message);
  }

  private async createCommit({ add = [], publicMessage = false }: TestCommitOptions) {
    const packages = await Promise.all(add.map((did) => generate(did, defaultLifetime)));
    return createCommit(
      { state: this.state, cipherSuite: this.impl },
      {
        wireAsPublicMessage: publicMessage,
        extraProposals: packages.map(({ publicPackage }) => ({
          proposalType: "add" as const,
          add: { keyPackage: publicPackage },
        })),
      },
    );
  }
}

/** A PrivateMessage re-encoded with another epoch in its header (its ciphertext no longer decrypts; the framing reads). */
export function withEpoch(privateMessageBytes: Uint8Array, epoch: bigint): Uint8Array {
  const message = decodeMlsMessage(privateMessageBytes, 0)?.[0];
  if (message?.wireformat !== "mls_private_message") throw new Error("expected a PrivateMessage");
  return encodeMlsMessage({ ...message, privateMessage: { ...message.privateMessage, epoch } });
}

const bytesToHex = (bytes: Uint8Array) => Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
const hexToBytes = (hex: string) => Uint8Array.from(hex.match(/../g) ?? [], (pair) => parseInt(pair, 16));
