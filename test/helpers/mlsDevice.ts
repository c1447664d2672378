/**
 * A small real MLS client for the devices tests: one `MlsDevice` is one device of a DID (one leaf in each group it
 * is in), holding its own ts-mls state and talking real HTTP to a running server (test/battle/server.ts).
 *
 * It does what an app does: registers, publishes key packages, creates roster-checked conversations, sends commit
 * bundles (commit + GroupInfo of the new epoch + Welcome), joins from a Welcome or by external commit (resync
 * included), catches up on the log and decrypts. See /work/wt/_brief/tsmls-notes.md for the ts-mls facts used here.
 *
 * Imports are per module (see test/helpers/mls.ts).
 */
import { createGroup, joinGroup, type ClientState } from "ts-mls/clientState.js";
import { createCommit, joinGroupExternal } from "ts-mls/createCommit.js";
import { createApplicationMessage } from "ts-mls/createMessage.js";
import type { CiphersuiteImpl } from "ts-mls/crypto/ciphersuite.js";
import { ratchetTreeFromExtension, verifyGroupInfoSignature, type GroupInfo } from "ts-mls/groupInfo.js";
import { acceptAll } from "ts-mls/incomingMessageAction.js";
import { makeKeyPackageRef, type KeyPackage, type PrivateKeyPackage } from "ts-mls/keyPackage.js";
import { decodeMlsMessage, encodeMlsMessage, type MLSMessage } from "ts-mls/message.js";
import { processMessage } from "ts-mls/processMessages.js";
import type { Proposal } from "ts-mls/proposal.js";
import { emptyPskIndex } from "ts-mls/pskIndex.js";
import type { RatchetTree } from "ts-mls/ratchetTree.js";
import { tokenFor } from "./context.js";
import { b64, cipherSuite, groupInfoBytes, hex, keyPackageBytes, keyPair, sha256Hex, SUITE } from "./mlsPieces.js";

const TIMEOUT_MS = 20_000;

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const unb64 = (value: string | { $bytes: string }) =>
  new Uint8Array(Buffer.from(typeof value === "string" ? value : value.$bytes, "base64"));
const sameBytes = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((byte, i) => byte === b[i]);

// ---------------------------------------------------------------------------------------------------------------
// HTTP

/** A non-2xx answer: tests assert on `status`, `error` and `retryAfter`. */
export class XrpcFailure extends Error {
  override name = "XrpcFailure";
  constructor(
    readonly method: string,
    readonly status: number,
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    readonly body: any,
    readonly retryAfter: string | null,
  ) {
    super(`${method} → ${status} ${typeof body === "string" ? body : JSON.stringify(body)}`);
  }
  get error(): string | undefined {
    return this.body?.error;
  }
}

/** XRPC over fetch as one DID, with the test token secret the server was started with. */
export class Xrpc {
  private token?: Promise<string>;
  constructor(
    readonly baseUrl: string,
    readonly did: string,
    private readonly secret?: string,
  ) {}

  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  async post(method: string, body: unknown): Promise<any> {
    return this.send(method, { method: "POST", body: JSON.stringify(body) });
  }

  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  async get(method: string, params: Record<string, string | string[] | undefined>): Promise<any> {
    const search = new URLSearchParams();
    for (const [key, value] of Object.entries(params)) {
      for (const item of value === undefined ? [] : Array.isArray(value) ? value : [value]) search.append(key, item);
    }
    return this.send(`${method}?${search}`, {});
  }

  private async send(path: string, init: RequestInit) {
    this.token ??= tokenFor(this.did, this.secret ? { secret: this.secret } : {});
    const response = await fetch(`${this.baseUrl}/xrpc/blue.catbird.mls.${path}`, {
      ...init,
      headers: { Authorization: `Bearer ${await this.token}`, "Content-Type": "application/json" },
      signal: AbortSignal.timeout(TIMEOUT_MS),
    });
    const text = await response.text();
    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch {
      // not JSON: keep the text
    }
    if (!response.ok)
      throw new XrpcFailure(path.split("?")[0]!, response.status, body, response.headers.get("Retry-After"));
    return body;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Reading MLS bytes

function decode(bytes: Uint8Array): MLSMessage {
  const decoded = decodeMlsMessage(bytes, 0);
  if (!decoded || decoded[1] !== bytes.length) throw new Error("not one MLS message");
  return decoded[0];
}

export function decodeGroupInfo(bytes: Uint8Array): GroupInfo {
  const message = decode(bytes);
  if (message.wireformat !== "mls_group_info") throw new Error(`expected a GroupInfo, got ${message.wireformat}`);
  return message.groupInfo;
}

export interface RosterLeaf {
  leafIndex: number;
  /** The credential identity: `<did>#<deviceId>` or a bare DID. */
  identity: string;
  signatureKey: Uint8Array;
}

/** The leaves of a ratchet tree (leaf n is node 2n). */
export function rosterOfTree(tree: RatchetTree): RosterLeaf[] {
  return tree.flatMap((node, index) =>
    node?.nodeType === "leaf" && node.leaf.credential.credentialType === "basic"
      ? [
          {
            leafIndex: index / 2,
            identity: decoder.decode(node.leaf.credential.identity),
            signatureKey: node.leaf.signaturePublicKey,
          },
        ]
      : [],
  );
}

/** A GroupInfo's roster, after checking its signature with the signer leaf's key (what a client should do too). */
export async function readGroupInfo(
  bytes: Uint8Array,
): Promise<{ epoch: number; groupId: string; signer: number; roster: RosterLeaf[]; groupInfo: GroupInfo }> {
  const groupInfo = decodeGroupInfo(bytes);
  const tree = ratchetTreeFromExtension(groupInfo);
  if (!tree) throw new Error("GroupInfo without ratchet_tree");
  const signer = tree[groupInfo.signer * 2];
  if (signer?.nodeType !== "leaf") throw new Error("GroupInfo signer is no leaf");
  if (!(await verifyGroupInfoSignature(groupInfo, signer.leaf.signaturePublicKey, (await cipherSuite()).signature))) {
    throw new Error("GroupInfo signature does not verify");
  }
  return {
    epoch: Number(groupInfo.groupContext.epoch),
    groupId: hex(groupInfo.groupContext.groupId),
    signer: groupInfo.signer,
    roster: rosterOfTree(tree),
    groupInfo,
  };
}

/** "alice/phone"-style names for a roster, for logs and assertions; `names` maps a DID to a short name. */
export function rosterNames(roster: RosterLeaf[], names: Record<string, string>): string[] {
  return roster
    .map(({ identity }) => {
      const [did, deviceId] = identity.split("#") as [string, string | undefined];
      return `${names[did] ?? did}/${deviceId ?? "(implicit)"}`;
    })
    .sort();
}

// ---------------------------------------------------------------------------------------------------------------
// The device

/** A key package another device handed out by getKeyPackages, ready to add. */
export interface ClaimedKeyPackage {
  did: string;
  deviceId: string;
  hash: string;
  lastResort: boolean;
  keyPackage: KeyPackage;
}

export interface DeviceRef {
  did: string;
  deviceId: string;
}

/** A decrypted application message. */
export interface Received {
  seq: number;
  epoch: number;
  sender: string;
  senderDevice?: string;
  text: string;
}

/** What a member's commit changes; PrivateMessage framing (ts-mls's default) unless `publicMessage`. */
export interface CommitChange {
  add?: ClaimedKeyPackage[];
  remove?: DeviceRef[];
  publicMessage?: boolean;
}

export interface CommitResult {
  newEpoch: number;
  seq: number;
  added: DeviceRef[];
  removed: DeviceRef[];
}

interface Session {
  state: ClientState;
  /** The last seq this device has read (or written) in the conversation's log. */
  cursor: number;
  /** Seqs this device wrote itself: its own commits and messages, never fed back to its own state. */
  mine: Set<number>;
  /** The epoch it joined at: older messages were never meant for it. */
  joinedEpoch: number;
}

/** Bounds catchUp so a server that keeps returning pages cannot spin a test forever. */
const MAX_PAGES = 1_000;

export class MlsDevice {
  readonly identity: string;
  private readonly keyPackages = new Map<
    string,
    { publicPackage: KeyPackage; privatePackage: PrivateKeyPackage; lastResort: boolean }
  >();
  private readonly sessions = new Map<string, Session>();

  private constructor(
    readonly http: Xrpc,
    readonly deviceId: string,
    /** A short name for logs, e.g. "bob/laptop". */
    readonly name: string,
    /** The device's signature key pair: it outlives any group state (needed to resync). */
    private readonly signatureKeys: { signKey: Uint8Array; publicKey: Uint8Array },
  ) {
    this.identity = deviceId ? `${http.did}#${deviceId}` : http.did;
  }

  /** A device of `did` talking to `baseUrl`; `deviceId` "" is the implicit device (credential identity = the DID). */
  static async create(baseUrl: string, did: string, deviceId: string, name = `${did}/${deviceId}`, secret?: string) {
    const keys = await (await cipherSuite()).signature.keygen();
    return new MlsDevice(new Xrpc(baseUrl, did, secret), deviceId, name, keys);
  }

  get did(): string {
    return this.http.did;
  }

  /** `{deviceId}` for requests that act as a device; nothing for the implicit device. */
  private get acting(): { deviceId?: string } {
    return this.deviceId ? { deviceId: this.deviceId } : {};
  }

  /** registerDevice: the answer's credentialIdentity must be this device's. */
  async register(name?: string): Promise<{ deviceId: string; credentialIdentity: string }> {
    return this.http.post("registerDevice", { deviceId: this.deviceId, ...(name ? { name } : {}) });
  }

  async revokeDevice(deviceId: string): Promise<{ revoked: boolean }> {
    return this.http.post("revokeDevice", { deviceId });
  }

  /** Generates and publishes `count` key packages (plus a last-resort one when asked); returns their hashes. */
  async publishKeyPackages(count: number, { lastResort = false } = {}): Promise<string[]> {
    const items: { keyPackage: string; cipherSuite: string; expires: string; lastResort?: boolean }[] = [];
    const hashes: string[] = [];
    const expires = new Date(Date.now() + 7 * 86_400_000).toISOString();
    for (let i = 0; i < count + (lastResort ? 1 : 0); i++) {
      const isLastResort = lastResort && i === count;
      const { bytes, hash } = await this.newKeyPackage(isLastResort);
      hashes.push(hash);
      items.push({
        keyPackage: b64(bytes),
        cipherSuite: SUITE,
        expires,
        ...(isLastResort ? { lastResort: true } : {}),
      });
    }
    await this.http.post("publishKeyPackages", { keyPackages: items });
    return hashes;
  }

  private generateKeyPackage() {
    return keyPair(this.identity, this.signatureKeys);
  }

  /** A fresh key package of this device, kept to join with later: its MLSMessage bytes and hash. */
  private async newKeyPackage(lastResort: boolean) {
    const generated = await this.generateKeyPackage();
    const bytes = keyPackageBytes(generated.publicPackage);
    const hash = sha256Hex(bytes);
    this.keyPackages.set(hash, { ...generated, lastResort });
    return { publicPackage: generated.publicPackage, bytes, hash };
  }

  /** A key package of this device that the server never saw: for tests that add a device behind the server's back. */
  async unpublishedKeyPackage(): Promise<ClaimedKeyPackage> {
    const { publicPackage, hash } = await this.newKeyPackage(false);
    return { did: this.did, deviceId: this.deviceId, hash, lastResort: false, keyPackage: publicPackage };
  }

  /** getKeyPackages for one DID: one package per live device of it. */
  async claimKeyPackages(did: string): Promise<ClaimedKeyPackage[]> {
    const answer = await this.http.get("getKeyPackages", { dids: did, cipherSuite: SUITE });
    return answer.keyPackages.map(
      (item: {
        did: string;
        deviceId?: string;
        keyPackage: { $bytes: string };
        keyPackageHash: string;
        lastResort?: boolean;
      }) => {
        const message = decode(unb64(item.keyPackage));
        if (message.wireformat !== "mls_key_package") throw new Error("getKeyPackages handed out something else");
        return {
          did: item.did,
          deviceId: item.deviceId ?? "",
          hash: item.keyPackageHash,
          lastResort: item.lastResort ?? false,
          keyPackage: message.keyPackage,
        };
      },
    );
  }

  /** getGroupInfo: the conversation's latest GroupInfo as bytes, and the epoch the server files it under. */
  async getGroupInfo(convoId: string): Promise<{ epoch: number; groupInfo: Uint8Array }> {
    const answer = await this.http.get("getGroupInfo", { convoId });
    return { epoch: answer.epoch, groupInfo: unb64(answer.groupInfo) };
  }

  /** The device's state in a conversation (throws when it has none). */
  state(convoId: string): ClientState {
    const session = this.sessions.get(convoId);
    if (!session) throw new Error(`${this.name} holds no state for ${convoId}`);
    return session.state;
  }

  epoch(convoId: string): number {
    return Number(this.state(convoId).groupContext.epoch);
  }

  /** The device's leaf index in the conversation's group. */
  leafIndex(convoId: string): number {
    return this.state(convoId).privatePath.leafIndex;
  }

  roster(convoId: string): RosterLeaf[] {
    return rosterOfTree(this.state(convoId).ratchetTree);
  }

  /** Whether the last commit this device applied removed it from the group. */
  removed(convoId: string): boolean {
    return this.state(convoId).groupActiveState.kind === "removedFromGroup";
  }

  /** The state is lost (app reinstalled, storage wiped): only the signature key pair survives. */
  forget(convoId: string): void {
    this.sessions.delete(convoId);
  }

  /** A roster-checked conversation holding only this device, at epoch 0; returns its id. */
  async createConvo(metadata: { name?: string } = {}): Promise<string> {
    const cs = await cipherSuite();
    const own = await this.generateKeyPackage();
    const groupId = crypto.getRandomValues(new Uint8Array(16));
    const state = await createGroup(groupId, own.publicPackage, own.privatePackage, [], cs);
    const groupInfo = await groupInfoBytes(state);
    const convo = await this.http.post("createConvo", {
      groupId: hex(groupId),
      cipherSuite: SUITE,
      groupInfo: b64(groupInfo),
      metadata,
      ...this.acting,
    });
    this.sessions.set(convo.id, { state, cursor: 0, mine: new Set(), joinedEpoch: 0 });
    return convo.id;
  }

  /** Builds a commit bundle without sending it: tests tamper with its parts. */
  async prepareCommit(
    convoId: string,
    { add = [], remove = [], publicMessage = false }: CommitChange,
  ): Promise<PreparedCommit> {
    const cs = await cipherSuite();
    const session = this.session(convoId);
    const roster = rosterOfTree(session.state.ratchetTree);
    const removals: Proposal[] = remove.map((device) => {
      const identity = device.deviceId ? `${device.did}#${device.deviceId}` : device.did;
      const leaf = roster.find((entry) => entry.identity === identity);
      if (!leaf) throw new Error(`${identity} is not in ${this.name}'s roster`);
      return { proposalType: "remove", remove: { removed: leaf.leafIndex } };
    });
    const adds: Proposal[] = add.map(({ keyPackage }) => ({ proposalType: "add", add: { keyPackage } }));
    const { commit, welcome, newState } = await createCommit(
      { state: session.state, cipherSuite: cs },
      { ratchetTreeExtension: true, wireAsPublicMessage: publicMessage, extraProposals: [...removals, ...adds] },
    );
    const groupInfo = await groupInfoBytes(newState);
    return {
      epoch: Number(session.state.groupContext.epoch),
      newState,
      commit: encodeMlsMessage(commit),
      groupInfo,
      welcome: welcome ? encodeMlsMessage({ version: "mls10", wireformat: "mls_welcome", welcome }) : undefined,
      keyPackageHashes: add.map(({ did, deviceId, hash }) => ({ did, deviceId, hash })),
    };
  }

  /** processCommit with a bundle as this device (its Welcome and key package hashes only when it has them). */
  private postCommit(convoId: string, bundle: PreparedCommit): Promise<CommitResult> {
    return this.http.post("processCommit", {
      convoId,
      epoch: bundle.epoch,
      commit: b64(bundle.commit),
      groupInfo: b64(bundle.groupInfo),
      ...(bundle.welcome ? { welcomeMessage: b64(bundle.welcome) } : {}),
      ...(bundle.keyPackageHashes.length ? { keyPackageHashes: bundle.keyPackageHashes } : {}),
      ...this.acting,
    });
  }

  /** processCommit with a bundle: on success the device moves to the new epoch; on any failure it keeps its state. */
  async sendCommit(convoId: string, bundle: PreparedCommit): Promise<CommitResult> {
    const result = await this.postCommit(convoId, bundle);
    const session = this.session(convoId);
    session.state = bundle.newState;
    session.mine.add(result.seq);
    return result;
  }

  /** A commit bundle adding and removing devices, sent. */
  async commit(convoId: string, change: CommitChange): Promise<CommitResult> {
    return this.sendCommit(convoId, await this.prepareCommit(convoId, change));
  }

  /** getWelcome → joinGroup → confirmWelcome (success or failure reported to the server). */
  async joinFromWelcome(convoId: string): Promise<void> {
    const cs = await cipherSuite();
    const answer = await this.http.get("getWelcome", { convoId, ...this.acting });
    const message = decode(unb64(answer.welcome));
    try {
      if (message.wireformat !== "mls_welcome") throw new Error(`expected a Welcome, got ${message.wireformat}`);
      const own = await this.keyPackageFor(
        message.welcome.secrets.map((secret) => secret.newMember),
        cs,
      );
      const state = await joinGroup(message.welcome, own.publicPackage, own.privatePackage, emptyPskIndex, cs);
      const epoch = Number(state.groupContext.epoch);
      this.sessions.set(convoId, { state, cursor: 0, mine: new Set(), joinedEpoch: epoch });
    } catch (error) {
      await this.http.post("confirmWelcome", {
        convoId,
        success: false,
        errorDetails: String(error).slice(0, 1024),
        ...this.acting,
      });
      throw error;
    }
    await this.http.post("confirmWelcome", { convoId, success: true, ...this.acting });
  }

  /** The private half of the key package a Welcome names (by KeyPackageRef); used once unless last-resort. */
  private async keyPackageFor(refs: Uint8Array[], cs: CiphersuiteImpl) {
    for (const [hash, entry] of this.keyPackages) {
      const ref = await makeKeyPackageRef(entry.publicPackage, cs.hash);
      if (refs.some((candidate) => sameBytes(candidate, ref))) {
        if (!entry.lastResort) this.keyPackages.delete(hash);
        return entry;
      }
    }
    throw new Error(`${this.name}: the Welcome names none of my key packages`);
  }

  /**
   * Joins by external commit from the latest GroupInfo: a new device of a member, or (`resync`) a device that lost
   * its state and replaces its former leaf (found by this device's signature key).
   */
  async externalJoin(convoId: string, { resync = false } = {}): Promise<CommitResult> {
    const bundle = await this.prepareExternalJoin(convoId, { resync });
    return this.sendExternalJoin(convoId, bundle);
  }

  /** `from`: a GroupInfo obtained elsewhere (e.g. handed over by a member) instead of this device's getGroupInfo. */
  async prepareExternalJoin(
    convoId: string,
    { resync = false, from }: { resync?: boolean; from?: { epoch: number; groupInfo: Uint8Array } } = {},
  ): Promise<PreparedCommit> {
    const cs = await cipherSuite();
    const answer = from ?? (await this.getGroupInfo(convoId));
    const read = await readGroupInfo(answer.groupInfo);
    if (read.epoch !== answer.epoch)
      throw new Error(`getGroupInfo says epoch ${answer.epoch}, its GroupInfo ${read.epoch}`);
    // ts-mls looks for the former leaf by signature key and loops forever (synchronously) when there is none.
    if (resync && !read.roster.some((leaf) => sameBytes(leaf.signatureKey, this.signatureKeys.publicKey))) {
      throw new Error(`${this.name} has no former leaf to resync: join as a new device`);
    }
    const own = await this.generateKeyPackage();
    const { publicMessage, newState } = await joinGroupExternal(
      read.groupInfo,
      own.publicPackage,
      own.privatePackage,
      resync,
      cs,
    );
    return {
      epoch: read.epoch,
      newState,
      commit: encodeMlsMessage({ version: "mls10", wireformat: "mls_public_message", publicMessage }),
      groupInfo: await groupInfoBytes(newState),
      keyPackageHashes: [],
    };
  }

  /** processCommit with an external commit; on success the device's state starts at the new epoch, read from the commit's seq on. */
  async sendExternalJoin(convoId: string, bundle: PreparedCommit): Promise<CommitResult> {
    const result = await this.postCommit(convoId, bundle);
    this.sessions.set(convoId, {
      state: bundle.newState,
      cursor: result.seq,
      mine: new Set([result.seq]),
      joinedEpoch: Number(bundle.newState.groupContext.epoch),
    });
    return result;
  }

  /** An application message, sent as this device; returns its seq. */
  async send(convoId: string, text: string): Promise<number> {
    const cs = await cipherSuite();
    const session = this.session(convoId);
    const { newState, privateMessage } = await createApplicationMessage(session.state, encoder.encode(text), cs);
    const bytes = encodeMlsMessage({ version: "mls10", wireformat: "mls_private_message", privateMessage });
    const sent = await this.http.post("sendMessage", {
      convoId,
      ciphertext: b64(bytes),
      epoch: Number(session.state.groupContext.epoch),
      ...this.acting,
    });
    session.state = newState;
    session.mine.add(sent.seq);
    return sent.seq;
  }

  /**
   * Reads the log from this device's cursor: applies commits in order (its own and those from before it joined
   * are skipped), decrypts application messages, stops at a commit that removes it. Moves the server-side read
   * cursor of this device too, while it is in the group. Returns the messages decrypted.
   */
  async catchUp(convoId: string): Promise<Received[]> {
    const cs = await cipherSuite();
    const session = this.session(convoId);
    const received: Received[] = [];
    for (let page = 0; page < MAX_PAGES; page++) {
      const answer = await this.http.get("getMessages", { convoId, sinceSeq: String(session.cursor), limit: "100" });
      for (const item of answer.messages as LogItem[]) {
        session.cursor = item.seq;
        if (session.mine.has(item.seq) || item.epoch < session.joinedEpoch) continue;
        if (session.state.groupActiveState.kind === "removedFromGroup") continue;
        const epoch = Number(session.state.groupContext.epoch);
        if (item.messageType === "commit" && item.epoch < epoch) continue;
        if (item.messageType === "commit" && item.epoch > epoch) {
          throw new Error(
            `${this.name} at epoch ${epoch} missed the commit of epoch ${epoch} (got ${item.epoch} at seq ${item.seq})`,
          );
        }
        const message = decode(unb64(item.ciphertext));
        if (message.wireformat !== "mls_private_message" && message.wireformat !== "mls_public_message") {
          throw new Error(`seq ${item.seq} is a ${message.wireformat}`);
        }
        const result = await processMessage(message, session.state, emptyPskIndex, acceptAll, cs);
        session.state = result.newState;
        if (result.kind === "applicationMessage") {
          received.push({
            seq: item.seq,
            epoch: item.epoch,
            sender: item.sender,
            senderDevice: item.senderDevice,
            text: decoder.decode(result.message),
          });
        }
      }
      if (!answer.cursor || answer.messages.length === 0) {
        // A removed device has no cursor to keep (a revoked one may not even ask).
        if (session.cursor > 0 && session.state.groupActiveState.kind !== "removedFromGroup") {
          await this.http.post("updateCursor", { convoId, cursor: String(session.cursor), ...this.acting });
        }
        return received;
      }
    }
    throw new Error(`${this.name}: getMessages kept paging`);
  }

  private session(convoId: string): Session {
    const session = this.sessions.get(convoId);
    if (!session) throw new Error(`${this.name} holds no state for ${convoId}`);
    return session;
  }
}

/** A commit bundle ready to send: the state it leads to is adopted only when the server accepts it. */
export interface PreparedCommit {
  /** The epoch the commit is sent in. */
  epoch: number;
  newState: ClientState;
  commit: Uint8Array;
  groupInfo: Uint8Array;
  welcome?: Uint8Array;
  keyPackageHashes: { did: string; deviceId: string; hash: string }[];
}

interface LogItem {
  seq: number;
  epoch: number;
  sender: string;
  senderDevice?: string;
  messageType: string;
  ciphertext: { $bytes: string };
}
