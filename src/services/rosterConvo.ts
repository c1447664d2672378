import type { Queryable } from "../db/driver.js";
import { invalidGroupInfo, invalidRequest, rosterMismatch, tooManyMembers } from "../errors.js";
import { readGroupInfo } from "../mls/groupInfo.js";
import type { KeyPackageHash } from "./commitBundle.js";
import { existingConvo, getConvoView, type ConvoView } from "./conversations.js";
import { rosterEvents } from "./convoChange.js";
import { checkKeyPackageHashes, keyPackageHashesFor, welcomeRecipients } from "./rosterChange.js";
import {
  checkActingDevice,
  checkLeafKeys,
  checkRosterDevices,
  deviceKey,
  diffRoster,
  insertRoster,
  lockDevices,
  writeGroupInfo,
  type Device,
} from "./roster.js";
import { storeWelcomes, type WelcomeInput } from "./welcomes.js";

export interface NewRosterConvo {
  id: string;
  groupId: string;
  creator: string;
  /** The creator's acting device ("" for the implicit one). */
  deviceId: string;
  cipherSuite: string;
  /** When given, exactly the roster's DIDs besides the creator. */
  initialMembers?: string[];
  groupInfo: Uint8Array;
  welcome?: WelcomeInput;
  /** When given, exactly one entry per device that gets the welcome. */
  keyPackageHashes?: KeyPackageHash[];
  name?: string;
  description?: string;
  /** At most this many DIDs besides the creator (createConvo's per-call limit). */
  maxInitialMembers: number;
  maxMembers: number;
  /** The most leaves the GroupInfo's tree may hold. */
  maxLeaves: number;
  now: Date;
}

/**
 * Creates a roster-checked conversation from its GroupInfo: it starts at the GroupInfo's epoch, its roster is the
 * GroupInfo's tree (which must hold the creator's acting device and be signed by it), its members are the
 * roster's DIDs, and every device but the creator's gets the welcome (one row each, the bytes stored once).
 * Events: per DID `joined`, then `deviceAdded` per device, so a stream alone tells who and which devices are in.
 * A repeat by its active creator answers the existing conversation, as createConvo does.
 */
export async function createRosterConvo(db: Queryable, convo: NewRosterConvo): Promise<ConvoView> {
  const info = await readGroupInfo(convo.groupInfo, convo.cipherSuite, convo.maxLeaves);
  if (info.groupId !== convo.groupId) throw invalidGroupInfo("the GroupInfo belongs to another MLS group than groupId");
  const leaves = diffRoster([], info.leaves).added;
  const acting: Device = { did: convo.creator, deviceId: convo.deviceId };

  return db.transaction(async (tx) => {
    const devices = await lockDevices(tx, [...leaves, acting]);
    checkActingDevice(devices, acting);
    const mine = leaves.find((leaf) => deviceKey(leaf) === deviceKey(acting));
    if (!mine) throw rosterMismatch("the GroupInfo's tree must hold the caller's device");
    if (info.signerLeaf !== mine.leafIndex)
      throw invalidGroupInfo("the GroupInfo must be signed by the caller's device");
    const dids = [...new Set(leaves.map((leaf) => leaf.did))];
    const others = dids.filter((did) => did !== convo.creator);
    const inTree = new Set(others);
    if (
      convo.initialMembers &&
      (convo.initialMembers.length !== inTree.size || convo.initialMembers.some((did) => !inTree.has(did)))
    ) {
      throw rosterMismatch("initialMembers must name exactly the DIDs of the GroupInfo's tree besides the caller");
    }
    if (others.length > convo.maxInitialMembers) {
      throw tooManyMembers(`at most ${convo.maxInitialMembers} initial members per call`);
    }
    if (dids.length > convo.maxMembers) {
      throw tooManyMembers(`a conversation holds at most ${convo.maxMembers} members`);
    }
    const welcomed = leaves.filter((leaf) => leaf !== mine);
    const hashes = keyPackageHashesFor(convo.keyPackageHashes, welcomed);
    if (convo.welcome && welcomed.length === 0) {
      throw invalidRequest("welcomeMessage needs a device besides the caller's");
    }
    checkRosterDevices(leaves, leaves, devices);
    await checkLeafKeys(tx, welcomed);
    await checkKeyPackageHashes(tx, hashes, welcomed);
    const events = rosterEvents({ added: leaves, removed: [], joiners: dids, departed: [], actor: acting });
    const [created] = await tx.query<{ id: string }>(
      `WITH convo AS (
         INSERT INTO conversations
           (id, group_id, creator_did, cipher_suite, name, description, created_at, epoch, roster_checked, next_event_seq)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, true, $9)
         ON CONFLICT (group_id) DO NOTHING
         RETURNING id, epoch, next_seq
       ), member_rows AS (
         INSERT INTO members (convo_id, did, joined_at, joined_seq, joined_event_seq, joined_epoch)
         SELECT convo.id, d.did, $7, convo.next_seq, 1, convo.epoch
           FROM convo, jsonb_array_elements_text($10::text::jsonb) AS d(did)
       ), event_rows AS (
         INSERT INTO events (convo_id, seq, kind, payload, created_at)
         SELECT convo.id, e.n, 'membership', e.value, $7
           FROM convo, jsonb_array_elements($11::text::jsonb) WITH ORDINALITY AS e(value, n)
       )
       SELECT id FROM convo`,
      [
        convo.id,
        convo.groupId,
        convo.creator,
        convo.cipherSuite,
        convo.name ?? null,
        convo.description ?? null,
        convo.now,
        info.epoch,
        events.length + 1,
        JSON.stringify(dids),
        JSON.stringify(events.map((event) => ({ ...event, epoch: info.epoch }))),
      ],
    );
    if (!created) return existingConvo(tx, convo.groupId, convo.creator);
    await insertRoster(tx, convo.id, leaves, info.epoch);
    await writeGroupInfo(tx, convo.id, info.epoch, convo.groupInfo, convo.now);
    if (convo.welcome) {
      await storeWelcomes(tx, convo.id, convo.welcome.bytes, welcomeRecipients(welcomed, hashes), convo.now);
    }
    return (await getConvoView(tx, convo.id))!;
  });
}
