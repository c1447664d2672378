import { bytesToHex } from "@noble/hashes/utils";
import type { Queryable } from "../db/driver.js";
import {
  convoNotFound,
  deviceRevoked,
  groupInfoNotFound,
  notMember,
  rosterMismatch,
  unknownDevice,
} from "../errors.js";
import type { RosterLeaf } from "../mls/groupInfo.js";
import { credentialIdentity, IMPLICIT_DEVICE } from "./actingDevice.js";
import { isActiveMember } from "./sql.js";

/**
 * The roster of a roster-checked conversation: the devices its MLS tree holds, one row per leaf, as the latest
 * accepted GroupInfo has them. It changes only with an accepted commit (or the conversation's creation), under
 * the conversation lock.
 */

/** A device: `deviceId` "" is the DID's implicit device. */
export interface Device {
  did: string;
  deviceId: string;
}

export interface RosterEntry extends Device {
  leafIndex: number;
  signatureKey: Uint8Array;
  addedEpoch: number;
}

/** A device's key in maps and sets: its credential identity (unique per device, and what the tree says). */
export const deviceKey = ({ did, deviceId }: Device) => credentialIdentity(did, deviceId);

export const sameBytes = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((byte, i) => byte === b[i]);

/** The conversation's roster, in leaf order. */
export async function readRoster(db: Queryable, convoId: string): Promise<RosterEntry[]> {
  const rows = await db.query<{
    did: string;
    device_id: string;
    leaf_index: number;
    signature_key: Uint8Array;
    added_epoch: number;
  }>(
    `SELECT did, device_id, leaf_index, signature_key, added_epoch FROM roster WHERE convo_id = $1 ORDER BY leaf_index`,
    [convoId],
  );
  return rows.map((row) => ({
    did: row.did,
    deviceId: row.device_id,
    leafIndex: Number(row.leaf_index),
    signatureKey: new Uint8Array(row.signature_key),
    addedEpoch: Number(row.added_epoch),
  }));
}

/**
 * The registered devices among `devices` (the implicit ones need no row), each with whether it is revoked.
 * Locked FOR SHARE in (did, device_id) order, before any conversation row (the brief's lock order): a device a
 * commit adds cannot be revoked until the commit is stored, and revokeDevice, which locks the device first and
 * the conversations after, never waits in the other order. One round trip; none without registered devices.
 */
export async function lockDevices(tx: Queryable, devices: Device[]): Promise<Map<string, { revoked: boolean }>> {
  const named = new Map<string, Device>();
  for (const device of devices) if (device.deviceId !== IMPLICIT_DEVICE) named.set(deviceKey(device), device);
  const found = new Map<string, { revoked: boolean }>();
  if (named.size === 0) return found;
  const rows = await tx.query<{ did: string; device_id: string; revoked: boolean }>(
    `SELECT d.did, d.device_id, d.revoked_at IS NOT NULL AS revoked
       FROM devices d JOIN jsonb_to_recordset($1::text::jsonb) AS w(did text, device_id text)
         ON d.did = w.did AND d.device_id = w.device_id
      ORDER BY d.did, d.device_id
        FOR SHARE OF d`,
    [JSON.stringify([...named.values()].map(({ did, deviceId }) => ({ did, device_id: deviceId })))],
  );
  for (const row of rows) found.set(deviceKey({ did: row.did, deviceId: row.device_id }), { revoked: row.revoked });
  return found;
}

/** The acting device as `requireDevice` judges it, from `lockDevices`' answer: 403 UnknownDevice / DeviceRevoked. */
export function checkActingDevice(devices: Map<string, { revoked: boolean }>, acting: Device): void {
  if (acting.deviceId === IMPLICIT_DEVICE) return;
  const device = devices.get(deviceKey(acting));
  if (!device) throw unknownDevice();
  if (device.revoked) throw deviceRevoked();
}

/**
 * How a new tree differs from the roster, by device. A device whose leaf moved (removed and added again in one
 * commit, or resynced by an external commit) is both removed (its old leaf) and added (its new one).
 */
export interface RosterDiff {
  added: RosterLeaf[];
  removed: RosterEntry[];
  /** Devices at the same leaf as before; the signature key may have changed (an update of that leaf). */
  kept: { before: RosterEntry; after: RosterLeaf }[];
}

/** The diff from `before` to the tree's `leaves`; 400 RosterMismatch when the tree holds a device twice. */
export function diffRoster(before: RosterEntry[], leaves: RosterLeaf[]): RosterDiff {
  const previous = new Map(before.map((entry) => [deviceKey(entry), entry]));
  const now = new Map<string, RosterLeaf>();
  const diff: RosterDiff = { added: [], removed: [], kept: [] };
  for (const leaf of leaves) {
    const key = deviceKey(leaf);
    if (now.has(key)) throw rosterMismatch(`the tree holds device ${key} twice`);
    now.set(key, leaf);
    const entry = previous.get(key);
    if (entry?.leafIndex === leaf.leafIndex) diff.kept.push({ before: entry, after: leaf });
    else diff.added.push(leaf);
  }
  diff.removed = before.filter((entry) => now.get(deviceKey(entry))?.leafIndex !== entry.leafIndex);
  return diff;
}

/**
 * 400 RosterMismatch unless every device of the new tree is registered to its DID (the implicit device excepted)
 * and no device it adds is revoked (a revoked device already there may stay until a member removes it).
 * `devices` is `lockDevices`' answer for at least the tree's devices.
 */
export function checkRosterDevices(
  leaves: RosterLeaf[],
  added: RosterLeaf[],
  devices: Map<string, { revoked: boolean }>,
): void {
  for (const leaf of leaves) {
    if (leaf.deviceId !== IMPLICIT_DEVICE && !devices.has(deviceKey(leaf))) {
      throw rosterMismatch(
        `leaf ${leaf.leafIndex} names ${deviceKey(leaf)}, which is not a device registered to ${leaf.did}`,
      );
    }
  }
  for (const leaf of added) {
    if (devices.get(deviceKey(leaf))?.revoked) {
      throw rosterMismatch(`leaf ${leaf.leafIndex} adds ${deviceKey(leaf)}, which was revoked`);
    }
  }
}

/**
 * 400 RosterMismatch unless each leaf's signature key is one its device's owner published in a key package: no
 * member can put a leaf naming someone else's device, with a key of its own, into the tree. `leaves` are those a
 * change brings in, the acting device's own excepted (its authenticated caller vouches for it). One round trip.
 */
export async function checkLeafKeys(db: Queryable, leaves: RosterLeaf[]): Promise<void> {
  if (leaves.length === 0) return;
  const [unvouched] = await db.query<{ leaf_index: number; identity: string }>(
    `SELECT l.leaf_index, l.identity
       FROM jsonb_to_recordset($1::text::jsonb) AS l(leaf_index integer, identity text, did text, device_id text, signature_key text)
      WHERE NOT EXISTS (SELECT 1 FROM key_packages k
                         WHERE k.owner_did = l.did AND k.device_id = l.device_id
                           AND k.signature_key = decode(l.signature_key, 'hex'))
      ORDER BY l.leaf_index LIMIT 1`,
    [JSON.stringify(leaves.map((leaf) => ({ ...leafRow(leaf), identity: leaf.identity })))],
  );
  if (unvouched) {
    throw rosterMismatch(
      `leaf ${unvouched.leaf_index} (${unvouched.identity}) has a signature key no key package of that device carries`,
    );
  }
}

/** The kept leaves whose signature key changed (an update of that leaf), as the new tree has them. */
export const rekeyedLeaves = (diff: RosterDiff): RosterLeaf[] =>
  diff.kept
    .filter(({ before, after }) => !sameBytes(before.signatureKey, after.signatureKey))
    .map(({ after }) => after);

/**
 * Writes a diff to the roster: removed rows go first (their leaves may be reused), kept rows take their new
 * signature key, added rows arrive with `epoch` as their added epoch. Two round trips at most.
 */
export async function writeRoster(tx: Queryable, convoId: string, diff: RosterDiff, epoch: number): Promise<void> {
  const rekeyed = rekeyedLeaves(diff);
  if (diff.removed.length > 0 || rekeyed.length > 0) {
    await tx.query(
      `WITH gone AS (
         DELETE FROM roster r USING jsonb_to_recordset($2::text::jsonb) AS g(did text, device_id text)
          WHERE r.convo_id = $1 AND r.did = g.did AND r.device_id = g.device_id
       )
       UPDATE roster r SET signature_key = decode(k.signature_key, 'hex')
         FROM jsonb_to_recordset($3::text::jsonb) AS k(did text, device_id text, signature_key text)
        WHERE r.convo_id = $1 AND r.did = k.did AND r.device_id = k.device_id`,
      [
        convoId,
        JSON.stringify(diff.removed.map(({ did, deviceId }) => ({ did, device_id: deviceId }))),
        JSON.stringify(
          rekeyed.map((after) => ({
            did: after.did,
            device_id: after.deviceId,
            signature_key: bytesToHex(after.signatureKey),
          })),
        ),
      ],
    );
  }
  await insertRoster(tx, convoId, diff.added, epoch);
}

/** Inserts roster rows for `leaves`, added at `epoch`. */
export async function insertRoster(tx: Queryable, convoId: string, leaves: RosterLeaf[], epoch: number): Promise<void> {
  if (leaves.length === 0) return;
  await tx.query(
    `INSERT INTO roster (convo_id, did, device_id, leaf_index, signature_key, added_epoch)
     SELECT $1, l.did, l.device_id, l.leaf_index, decode(l.signature_key, 'hex'), $3
       FROM jsonb_to_recordset($2::text::jsonb) AS l(did text, device_id text, leaf_index integer, signature_key text)`,
    [convoId, JSON.stringify(leaves.map(leafRow)), epoch],
  );
}

const leafRow = (leaf: RosterLeaf) => ({
  did: leaf.did,
  device_id: leaf.deviceId,
  leaf_index: leaf.leafIndex,
  signature_key: bytesToHex(leaf.signatureKey),
});

/**
 * Keeps `groupInfo` as the conversation's latest GroupInfo (for `epoch`), with what the commit that brought it did
 * (`outcome`, the answer a repeat of that commit gets; none at the conversation's creation).
 */
export async function writeGroupInfo(
  tx: Queryable,
  convoId: string,
  epoch: number,
  groupInfo: Uint8Array,
  now: Date,
  outcome?: object,
): Promise<void> {
  await tx.query(
    `INSERT INTO group_infos (convo_id, epoch, group_info, updated_at, outcome) VALUES ($1, $2, $3, $4, $5::text::jsonb)
     ON CONFLICT (convo_id) DO UPDATE
       SET epoch = excluded.epoch, group_info = excluded.group_info, updated_at = excluded.updated_at, outcome = excluded.outcome`,
    [convoId, epoch, groupInfo, now, outcome ? JSON.stringify(outcome) : null],
  );
}

/**
 * The conversation's latest GroupInfo and its epoch, for an active member (any of its devices, or one about to
 * join by external commit): 404 ConvoNotFound, 403 NotMember, 404 GroupInfoNotFound when it is not roster-checked.
 * One round trip.
 */
export async function latestGroupInfo(
  db: Queryable,
  convoId: string,
  did: string,
): Promise<{ epoch: number; groupInfo: Uint8Array }> {
  const [row] = await db.query<{ epoch: number | null; group_info: Uint8Array | null; is_member: boolean }>(
    `SELECT g.epoch, g.group_info,
            ${isActiveMember("c.id", "$2")} AS is_member
       FROM conversations c LEFT JOIN group_infos g ON g.convo_id = c.id WHERE c.id = $1`,
    [convoId, did],
  );
  if (!row) throw convoNotFound();
  if (!row.is_member) throw notMember();
  if (row.epoch === null || row.group_info === null) throw groupInfoNotFound();
  return { epoch: Number(row.epoch), groupInfo: new Uint8Array(row.group_info) };
}

/** Devices grouped by DID, in first-seen order. */
export function byDid<T extends Device>(devices: T[]): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const device of devices) groups.set(device.did, [...(groups.get(device.did) ?? []), device]);
  return groups;
}
