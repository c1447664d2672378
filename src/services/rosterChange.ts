import { bytesToHex } from "@noble/hashes/utils";
import type { Queryable } from "../db/driver.js";
import { notCreator, rosterMismatch } from "../errors.js";
import type { RosterLeaf } from "../mls/groupInfo.js";
import { IMPLICIT_DEVICE } from "./actingDevice.js";
import type { CommitBundle, Declared, KeyPackageHash } from "./commitBundle.js";
import type { LockedConvo } from "./convoLock.js";
import { deviceKey, type Device, type RosterDiff, type RosterEntry } from "./roster.js";

/** What a roster change may be: what the request declares about it, and who may remove which device. */

/** What addMembers / leaveConvo declared must be exactly what the tree changes. */
export function checkDeclared(declared: Declared | undefined, diff: RosterDiff, leaves: RosterLeaf[]): void {
  if (!declared) return;
  if (declared.kind === "add") {
    if (diff.removed.length > 0) throw rosterMismatch("addMembers' commit removes devices; use processCommit");
    const gaining = new Set(diff.added.map((leaf) => leaf.did));
    const listed = new Set(declared.dids);
    if (gaining.size !== listed.size || [...listed].some((did) => !gaining.has(did))) {
      throw rosterMismatch("didList must name exactly the DIDs whose devices the commit adds");
    }
    return;
  }
  const losing = new Set(diff.removed.map((entry) => entry.did));
  if (
    diff.added.length > 0 ||
    losing.size !== 1 ||
    !losing.has(declared.did) ||
    leaves.some((leaf) => leaf.did === declared.did)
  ) {
    throw rosterMismatch(`the commit must remove every device of ${declared.did} and change nothing else`);
  }
}

/** keyPackageHashes, when given, name exactly the added devices, once each: their hashes by device key. */
export function keyPackageHashesFor(hashes: KeyPackageHash[] | undefined, added: RosterLeaf[]): Map<string, string> {
  const named = new Map<string, string>();
  if (!hashes) return named;
  const adding = new Set(added.map(deviceKey));
  for (const entry of hashes) {
    const key = deviceKey(entry);
    if (!adding.has(key) || named.has(key)) {
      throw rosterMismatch(`keyPackageHashes names ${key.slice(0, 2200)}, which the commit does not add (or twice)`);
    }
    named.set(key, entry.hash);
  }
  if (named.size !== adding.size) throw rosterMismatch("keyPackageHashes must name every device the commit adds");
  return named;
}

/** The Welcome's recipients: each added device, with the hash `keyPackageHashesFor` read for it (or none). */
export const welcomeRecipients = (added: Device[], hashes: Map<string, string>) =>
  added.map(({ did, deviceId }) => ({ did, deviceId, hash: hashes.get(deviceKey({ did, deviceId })) ?? null }));

/**
 * 400 RosterMismatch unless each hash `keyPackageHashesFor` read names a key package of its own device that carries
 * the leaf's signature key: the package the leaf was made from. The welcome keeps the hash and consumes that
 * package (matched by owner and hash), so no entry may point at another device's package. One round trip.
 */
export async function checkKeyPackageHashes(
  db: Queryable,
  hashes: Map<string, string>,
  added: RosterLeaf[],
): Promise<void> {
  const named = added.filter((leaf) => hashes.has(deviceKey(leaf)));
  if (named.length === 0) return;
  const [stray] = await db.query<{ identity: string }>(
    `SELECT n.identity
       FROM jsonb_to_recordset($1::text::jsonb) AS n(identity text, did text, device_id text, hash text, signature_key text)
      WHERE NOT EXISTS (SELECT 1 FROM key_packages k
                         WHERE k.owner_did = n.did AND k.device_id = n.device_id AND k.hash = n.hash
                           AND k.signature_key = decode(n.signature_key, 'hex'))
      LIMIT 1`,
    [
      JSON.stringify(
        named.map((leaf) => ({
          identity: leaf.identity,
          did: leaf.did,
          device_id: leaf.deviceId,
          hash: hashes.get(deviceKey(leaf)),
          signature_key: bytesToHex(leaf.signatureKey),
        })),
      ),
    ],
  );
  if (stray) {
    throw rosterMismatch(
      `keyPackageHashes names for ${stray.identity} no key package of that device with its leaf's key`,
    );
  }
}

/** Which of the DIDs a diff touches are active members, and which of the removed devices are revoked. */
export interface Standing {
  active: Set<string>;
  revoked: Set<string>;
}

export async function readStanding(tx: Queryable, convoId: string, diff: RosterDiff): Promise<Standing> {
  const dids = [...new Set([...diff.added, ...diff.removed].map((entry) => entry.did))];
  if (dids.length === 0) return { active: new Set(), revoked: new Set() };
  const removed = diff.removed.filter((entry) => entry.deviceId !== IMPLICIT_DEVICE);
  const [row] = await tx.query<{ active: string[]; revoked: Device[] }>(
    `SELECT (SELECT coalesce(jsonb_agg(m.did), '[]') FROM members m
              WHERE m.convo_id = $1 AND m.left_at IS NULL AND m.did IN (SELECT jsonb_array_elements_text($2::text::jsonb))) AS active,
            (SELECT coalesce(jsonb_agg(jsonb_build_object('did', d.did, 'deviceId', d.device_id)), '[]')
               FROM devices d JOIN jsonb_to_recordset($3::text::jsonb) AS r(did text, device_id text)
                 ON d.did = r.did AND d.device_id = r.device_id
              WHERE d.revoked_at IS NOT NULL) AS revoked`,
    [convoId, JSON.stringify(dids), JSON.stringify(removed.map(({ did, deviceId }) => ({ did, device_id: deviceId })))],
  );
  return { active: new Set(row!.active), revoked: new Set(row!.revoked.map(deviceKey)) };
}

/**
 * Who may remove what (the contract's table): a device of the committer's own DID, any revoked device, any device
 * of a DID that has left; another DID's devices only the creator or an admin (403 NotCreator).
 */
export function authorizeRemovals(
  removed: RosterEntry[],
  standing: Standing,
  convo: LockedConvo,
  bundle: CommitBundle,
): void {
  const privileged = bundle.caller === convo.creatorDid || bundle.admins.includes(bundle.caller);
  for (const entry of removed) {
    const allowed =
      entry.did === bundle.caller ||
      standing.revoked.has(deviceKey(entry)) ||
      !standing.active.has(entry.did) ||
      privileged;
    if (!allowed) throw notCreator();
  }
}
