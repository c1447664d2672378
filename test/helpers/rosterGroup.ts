/**
 * Real ts-mls groups whose leaves are devices (credential identity `did#deviceId`, or the bare DID for the implicit
 * device), for the roster tests. Every device of the group keeps its own state; a commit is made by one device and
 * yields the bundle a client sends (commit, GroupInfo of the new epoch with the ratchet_tree extension, Welcome,
 * key package hashes). `apply()` moves the whole group on once the server accepted it; a refused bundle is dropped.
 *
 * Imports are per module (see test/helpers/mls.ts).
 */
import { createGroup, joinGroup, type ClientState } from "ts-mls/clientState.js";
import { createCommit, joinGroupExternal } from "ts-mls/createCommit.js";
import { createApplicationMessage } from "ts-mls/createMessage.js";
import { acceptAll } from "ts-mls/incomingMessageAction.js";
import { decodeMlsMessage, encodeMlsMessage, type MLSMessage } from "ts-mls/message.js";
import { processMessage } from "ts-mls/processMessages.js";
import type { Proposal } from "ts-mls/proposal.js";
import { emptyPskIndex } from "ts-mls/pskIndex.js";
import {
  b64,
  cipherSuite,
  groupInfoBytes,
  hex,
  keyPackageBytes,
  keyPair,
  sha256Hex,
  SUITE,
  type KeyPair,
} from "./mlsPieces.js";

export { b64, groupInfoBytes, SUITE };

export interface Device {
  did: string;
  deviceId: string;
}

export const identityOf = ({ did, deviceId }: Device) => (deviceId === "" ? did : `${did}#${deviceId}`);

/** One device in the group: its key pair and, once it joined, its state. */
export class Member implements Device {
  constructor(
    readonly did: string,
    readonly deviceId: string,
    readonly keys: KeyPair,
    public state: ClientState,
  ) {}

  get leafIndex(): number {
    return this.state.privatePath.leafIndex;
  }
}

/** What a client sends for one commit, and how the group moves on once the server took it. */
export interface Bundle {
  commit: Uint8Array;
  groupInfo: Uint8Array;
  welcome?: Uint8Array;
  /** The epoch the commit was sent in. */
  epoch: number;
  keyPackageHashes: { did: string; deviceId: string; hash: string }[];
  /** The devices the commit added (they join from the Welcome in `apply`). */
  added: Device[];
  /** The added devices' key packages as MLSMessages, in `added` order. */
  keyPackageBytes?: Uint8Array[];
  apply(): Promise<void>;
}

export interface CommitOptions {
  add?: Device[];
  remove?: Device[];
  publicMessage?: boolean;
  /** Key packages to add as they are (e.g. a second one for a device already added). */
  extraKeyPackages?: { device: Device; keys: KeyPair }[];
}

/** Where a group's fresh key packages go before a commit uses them (a server accepts only published leaf keys). */
export type Publish = (device: Device, keyPackage: Uint8Array) => Promise<void>;

export class RosterGroup {
  readonly members = new Map<string, Member>();

  private constructor(
    readonly groupId: Uint8Array,
    private readonly publish?: Publish,
  ) {}

  get groupIdHex(): string {
    return hex(this.groupId);
  }

  /** A group in epoch 0 holding only `creator`; `publish` receives its key package and each one a commit adds. */
  static async create(creator: Device, { publish }: { publish?: Publish } = {}): Promise<RosterGroup> {
    const group = new RosterGroup(crypto.getRandomValues(new Uint8Array(16)), publish);
    const keys = await keyPair(identityOf(creator));
    await publish?.(creator, keyPackageBytes(keys.publicPackage));
    const state = await createGroup(group.groupId, keys.publicPackage, keys.privatePackage, [], await cipherSuite());
    group.members.set(identityOf(creator), new Member(creator.did, creator.deviceId, keys, state));
    return group;
  }

  member(device: Device): Member {
    const member = this.members.get(identityOf(device));
    if (!member) throw new Error(`${identityOf(device)} is not in the group`);
    return member;
  }

  /** The group's epoch (every member agrees). */
  get epoch(): number {
    return Number([...this.members.values()][0]!.state.groupContext.epoch);
  }

  /** The current GroupInfo as `by` makes it. */
  async groupInfo(by: Device): Promise<Uint8Array> {
    return groupInfoBytes(this.member(by).state);
  }

  /** A fresh key pair for a device, to add with `extraKeyPackages`. */
  static keyPair(device: Device): Promise<KeyPair> {
    return keyPair(identityOf(device));
  }

  /** A commit by `by` adding and removing devices; nothing changes until `apply()`. */
  async commit(by: Device, options: CommitOptions = {}): Promise<Bundle> {
    const committer = this.member(by);
    const cs = await cipherSuite();
    const fresh = await Promise.all(
      (options.add ?? []).map(async (device) => ({ device, keys: await keyPair(identityOf(device)) })),
    );
    const adds = [...fresh, ...(options.extraKeyPackages ?? [])];
    for (const { device, keys } of adds) await this.publish?.(device, keyPackageBytes(keys.publicPackage));
    const proposals: Proposal[] = [
      ...(options.remove ?? []).map((device) => ({
        proposalType: "remove" as const,
        remove: { removed: this.leafOf(committer.state, device) },
      })),
      ...adds.map(({ keys }) => ({ proposalType: "add" as const, add: { keyPackage: keys.publicPackage } })),
    ];
    const { commit, welcome, newState } = await createCommit(
      { state: committer.state, cipherSuite: cs },
      { extraProposals: proposals, wireAsPublicMessage: options.publicMessage ?? false, ratchetTreeExtension: true },
    );
    const welcomeBytes = welcome && encodeMlsMessage({ version: "mls10", wireformat: "mls_welcome", welcome });
    const epoch = Number(committer.state.groupContext.epoch);
    return {
      commit: encodeMlsMessage(commit),
      groupInfo: await groupInfoBytes(newState),
      ...(welcomeBytes && { welcome: welcomeBytes }),
      epoch,
      keyPackageHashes: adds.map(({ device, keys }) => ({
        did: device.did,
        deviceId: device.deviceId,
        hash: sha256Hex(keyPackageBytes(keys.publicPackage)),
      })),
      added: adds.map(({ device }) => device),
      keyPackageBytes: adds.map(({ keys }) => keyPackageBytes(keys.publicPackage)),
      apply: async () => {
        for (const device of options.remove ?? []) this.members.delete(identityOf(device));
        await this.process(commit, committer);
        committer.state = newState;
        for (const { device, keys } of adds) {
          const state = await joinGroup(welcome!, keys.publicPackage, keys.privatePackage, emptyPskIndex, cs);
          this.members.set(identityOf(device), new Member(device.did, device.deviceId, keys, state));
        }
      },
    };
  }

  /**
   * An external commit by `device` (a PublicMessage from a new_member_commit sender) from the current GroupInfo: a
   * new device, or with `resync` the device already in the group rejoining with its own signature key pair.
   */
  async externalJoin(device: Device, { resync = false }: { resync?: boolean } = {}): Promise<Bundle> {
    const cs = await cipherSuite();
    const source = [...this.members.values()].find((member) => identityOf(member) !== identityOf(device))!;
    const info = decodeMlsMessage(await groupInfoBytes(source.state), 0)![0];
    if (info.wireformat !== "mls_group_info") throw new Error("not a GroupInfo");
    const former = resync ? this.member(device) : undefined;
    const keys = former
      ? await keyPair(identityOf(device), {
          signKey: former.keys.privatePackage.signaturePrivateKey,
          publicKey: former.keys.publicPackage.leafNode.signaturePublicKey,
        })
      : await keyPair(identityOf(device));
    const { publicMessage, newState } = await joinGroupExternal(
      info.groupInfo,
      keys.publicPackage,
      keys.privatePackage,
      resync,
      cs,
    );
    const commit: MLSMessage = { version: "mls10", wireformat: "mls_public_message", publicMessage };
    return {
      commit: encodeMlsMessage(commit),
      groupInfo: await groupInfoBytes(newState),
      epoch: Number(info.groupInfo.groupContext.epoch),
      keyPackageHashes: [],
      added: [device],
      apply: async () => {
        this.members.delete(identityOf(device));
        await this.process(commit);
        this.members.set(identityOf(device), new Member(device.did, device.deviceId, keys, newState));
      },
    };
  }

  /** The GroupInfo `member` would make after processing `bundle`'s commit (without moving the group). */
  async groupInfoAfter(bundle: Bundle, by: Device): Promise<Uint8Array> {
    const message = decodeMlsMessage(bundle.commit, 0)![0];
    if (message.wireformat !== "mls_private_message" && message.wireformat !== "mls_public_message") {
      throw new Error("not a commit");
    }
    const result = await processMessage(message, this.member(by).state, emptyPskIndex, acceptAll, await cipherSuite());
    return groupInfoBytes(result.newState);
  }

  /** An application message (a PrivateMessage) from `by` in the current epoch. */
  async application(by: Device, text: string): Promise<Uint8Array> {
    const member = this.member(by);
    const { newState, privateMessage } = await createApplicationMessage(
      member.state,
      new TextEncoder().encode(text),
      await cipherSuite(),
    );
    member.state = newState;
    return encodeMlsMessage({ version: "mls10", wireformat: "mls_private_message", privateMessage });
  }

  private leafOf(state: ClientState, device: Device): number {
    const wanted = identityOf(device);
    const index = state.ratchetTree.findIndex(
      (node) =>
        node?.nodeType === "leaf" &&
        node.leaf.credential.credentialType === "basic" &&
        new TextDecoder().decode(node.leaf.credential.identity) === wanted,
    );
    if (index < 0) throw new Error(`${wanted} has no leaf`);
    return index / 2;
  }

  /** Every member but `except` processes the commit. */
  private async process(commit: MLSMessage, except?: Member): Promise<void> {
    if (commit.wireformat !== "mls_private_message" && commit.wireformat !== "mls_public_message") return;
    const cs = await cipherSuite();
    for (const member of this.members.values()) {
      if (member === except) continue;
      member.state = (await processMessage(commit, member.state, emptyPskIndex, acceptAll, cs)).newState;
    }
  }
}
