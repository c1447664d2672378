import type { Queryable } from "../db/driver.js";
import {
  convoNotFound,
  epochMismatch,
  invalidCommit,
  invalidGroupInfo,
  invalidRequest,
  notMember,
  tooManyMembers,
} from "../errors.js";
import { readGroupInfo } from "../mls/groupInfo.js";
import { checkCommitter, checkPublicCommit } from "./commitAuthor.js";
import { checkCommit, type CommitInput } from "./commits.js";
import { recordChange, rosterEvents } from "./convoChange.js";
import { lockConvo, type LockedConvo } from "./convoLock.js";
import { joinMembers } from "./members.js";
import { checkExternalJoin, recordExternalJoin } from "./externalJoin.js";
import {
  checkActingDevice,
  checkLeafKeys,
  checkRosterDevices,
  diffRoster,
  lockDevices,
  readRoster,
  rekeyedLeaves,
  sameBytes,
  writeGroupInfo,
  writeRoster,
  type Device,
} from "./roster.js";
import {
  authorizeRemovals,
  checkDeclared,
  checkKeyPackageHashes,
  keyPackageHashesFor,
  welcomeRecipients,
  readStanding,
} from "./rosterChange.js";
import { checkWelcomeSuite, retireConvoDeviceWelcomes, storeWelcomes, type WelcomeInput } from "./welcomes.js";
import { isActiveMember } from "./sql.js";

export interface KeyPackageHash extends Device {
  hash: string;
}

/** What addMembers / leaveConvo declare about a commit they carry (the DID-level checks). */
export type Declared = { kind: "add"; dids: string[] } | { kind: "remove"; did: string };

/** A commit bundle: the commit, the GroupInfo of the epoch it makes, and the Welcome for the devices it adds. */
export interface CommitBundle {
  convoId: string;
  caller: string;
  /** The device the caller acts as ("" for its implicit device). */
  deviceId: string;
  commit: CommitInput;
  groupInfo: Uint8Array;
  welcome?: WelcomeInput;
  /** When given, exactly one entry per added device. */
  keyPackageHashes?: KeyPackageHash[];
  declared?: Declared;
  admins: readonly string[];
  maxMembers: number;
  /** The most leaves a GroupInfo's tree may hold (bounds the work on an untrusted tree). */
  maxLeaves: number;
  rejoinCooldownSeconds: number;
  now: Date;
}

export interface CommitOutcome {
  newEpoch: number;
  seq: number;
  added: Device[];
  removed: Device[];
}

/**
 * Accepts a commit bundle in a roster-checked conversation, or nothing of it. In one transaction: the devices the
 * new tree names are locked (FOR SHARE), then the conversation; the commit must win its epoch (rule 3); the
 * GroupInfo must be the new epoch's, signed by the committing device's leaf (for an external commit: the joiner's
 * new leaf); the adds and removes are the difference between the roster and the GroupInfo's tree, and each must
 * be allowed. Then the commit is stored with the next seq, the epoch moves on, the roster and the GroupInfo are
 * replaced, the Welcome is stored for each added device, DIDs join or are removed, and the events are appended.
 */
export async function processCommit(db: Queryable, bundle: CommitBundle): Promise<CommitOutcome> {
  const cipherSuite = await bundleConvoSuite(db, bundle.convoId, bundle.caller);
  // Signature checks are CPU work: done before any lock is taken.
  const info = await readGroupInfo(bundle.groupInfo, cipherSuite, bundle.maxLeaves);
  const acting = { did: bundle.caller, deviceId: bundle.deviceId };
  return db.transaction(async (tx) => {
    const devices = await lockDevices(tx, [...info.leaves, acting]);
    checkActingDevice(devices, acting);
    const convo = await lockConvo(tx, bundle.convoId, bundle.caller);
    if (!convo.callerActive) throw notMember();
    if (!convo.rosterChecked) throw notRosterChecked();
    if (bundle.welcome) checkWelcomeSuite(bundle.welcome, convo.cipherSuite);
    const check = await checkCommit(tx, convo, bundle.commit);
    if (check.kind === "repeat") return repeatedOutcome(tx, convo, check.newEpoch, bundle.groupInfo);
    if (info.groupId !== convo.groupId) throw invalidGroupInfo("the GroupInfo belongs to another MLS group");
    if (info.epoch !== convo.epoch + 1) {
      throw invalidGroupInfo(`the GroupInfo is for epoch ${info.epoch}; the commit makes epoch ${convo.epoch + 1}`);
    }

    const before = await readRoster(tx, convo.id);
    let diff = diffRoster(before, info.leaves);
    checkRosterDevices(info.leaves, diff.added, devices);
    const sender = bundle.commit.sender?.type ?? "member";
    if (sender === "new_member_commit" && bundle.declared) {
      throw invalidCommit("an external commit goes through processCommit, not addMembers or leaveConvo");
    }
    if (sender === "new_member_commit") {
      diff = await checkExternalJoin(tx, convo.id, { acting, info, before, diff, bundle });
    } else if (sender === "member") {
      checkCommitter(bundle.commit, info, before, acting);
    } else {
      throw invalidCommit(`a commit's sender must be a member or a new member, not ${sender}`);
    }
    // An external commit changes only the acting device; a member's commit may bring in keys only their devices
    // published, at new leaves and at kept ones (else any member could pin another device to a key of its own,
    // which that device could then neither commit nor resync with). checkCommitter keeps the committer's key.
    if (sender === "member") await checkLeafKeys(tx, [...diff.added, ...rekeyedLeaves(diff)]);
    await checkPublicCommit(tx, convo, bundle, {
      acting,
      external: sender === "new_member_commit",
      before,
      info,
      diff,
    });
    checkDeclared(bundle.declared, diff, info.leaves);
    const hashes = keyPackageHashesFor(bundle.keyPackageHashes, diff.added);
    await checkKeyPackageHashes(tx, hashes, diff.added);
    if (bundle.welcome && diff.added.length === 0) throw invalidRequest("welcomeMessage but the commit adds no device");

    const standing = await readStanding(tx, convo.id, diff);
    if (sender === "member") authorizeRemovals(diff.removed, standing, convo, bundle);
    const joiners = [...new Set(diff.added.map((leaf) => leaf.did))].filter((did) => !standing.active.has(did));
    const remaining = new Set(info.leaves.map((leaf) => leaf.did));
    const departed = [...new Set(diff.removed.map((entry) => entry.did))].filter(
      (did) => !remaining.has(did) && standing.active.has(did),
    );
    if (convo.memberCount + joiners.length - departed.length > bundle.maxMembers) {
      throw tooManyMembers(`a conversation holds at most ${bundle.maxMembers} members`);
    }

    await changeMembers(tx, convo.id, joiners, departed, bundle.now);
    await retireConvoDeviceWelcomes(tx, convo.id, diff.removed, bundle.now);
    if (bundle.welcome) {
      await storeWelcomes(tx, convo.id, bundle.welcome.bytes, welcomeRecipients(diff.added, hashes), bundle.now);
    }
    if (sender === "new_member_commit") await recordExternalJoin(tx, convo.id, acting, bundle.now);
    await writeRoster(tx, convo.id, diff, info.epoch);
    const { newEpoch, seq } = await recordChange(tx, convo, {
      sender: bundle.caller,
      senderDevice: bundle.deviceId,
      commit: { bytes: bundle.commit.bytes, epoch: convo.epoch },
      membership: rosterEvents({ added: diff.added, removed: diff.removed, joiners, departed, actor: acting }),
      now: bundle.now,
    });
    const outcome = { newEpoch, seq: seq!, added: diff.added.map(device), removed: diff.removed.map(device) };
    await writeGroupInfo(tx, convo.id, info.epoch, bundle.groupInfo, bundle.now, outcome);
    return outcome;
  });
}

const device = ({ did, deviceId }: Device): Device => ({ did, deviceId });

export const notRosterChecked = () =>
  invalidRequest(
    "this conversation is not roster-checked (it was created without a groupInfo): commit through addMembers or leaveConvo",
  );

/**
 * The conversation's cipher suite, read before any lock to check the GroupInfo with (it never changes):
 * 404 ConvoNotFound, 403 NotMember, 400 when it is not roster-checked. Everything is checked again under the lock.
 */
async function bundleConvoSuite(db: Queryable, convoId: string, caller: string): Promise<string> {
  const [row] = await db.query<{ cipher_suite: string; roster_checked: boolean; is_member: boolean }>(
    `SELECT c.cipher_suite, c.roster_checked,
            ${isActiveMember("c.id", "$2")} AS is_member
       FROM conversations c WHERE c.id = $1`,
    [convoId, caller],
  );
  if (!row) throw convoNotFound();
  if (!row.is_member) throw notMember();
  if (!row.roster_checked) throw notRosterChecked();
  return row.cipher_suite;
}

/**
 * The same commit bytes again: the same answer when they are the latest commit and come with the same GroupInfo
 * (so what they did is the conversation's state now); otherwise 409 EpochMismatch, as for any stale commit.
 */
async function repeatedOutcome(
  tx: Queryable,
  convo: LockedConvo,
  newEpoch: number,
  groupInfo: Uint8Array,
): Promise<CommitOutcome> {
  if (newEpoch !== convo.epoch) throw epochMismatch(convo.epoch);
  const [row] = await tx.query<{ group_info: Uint8Array; outcome: CommitOutcome | null }>(
    `SELECT group_info, outcome FROM group_infos WHERE convo_id = $1 AND epoch = $2`,
    [convo.id, newEpoch],
  );
  if (!row?.outcome || !sameBytes(new Uint8Array(row.group_info), groupInfo)) throw epochMismatch(convo.epoch);
  return row.outcome;
}

/**
 * DIDs whose first device arrives join (reading from this commit on, like addMembers' newcomers); active DIDs whose
 * last device goes are removed. One round trip, none when neither happens.
 */
async function changeMembers(tx: Queryable, convoId: string, joiners: string[], departed: string[], now: Date) {
  if (joiners.length === 0 && departed.length === 0) return;
  await tx.query(
    `WITH joined AS (${joinMembers("$1", "$2", "$4")})
     UPDATE members SET left_at = greatest(joined_at, $4)
      WHERE convo_id = $1 AND left_at IS NULL AND did IN (SELECT jsonb_array_elements_text($3::text::jsonb))`,
    [convoId, JSON.stringify(joiners), JSON.stringify(departed), now],
  );
}
