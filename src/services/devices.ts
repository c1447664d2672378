import type { Queryable } from "../db/driver.js";
import { deviceRevoked, tooManyDevices, unknownDevice } from "../errors.js";
import { credentialIdentity } from "./actingDevice.js";
import { recordConvoChange } from "./convoChange.js";
import { lockConvo, type LockedConvo } from "./convoLock.js";
import { retireDeviceWelcomes } from "./welcomes.js";
import { ADVISORY_LOCK } from "../db/advisoryLocks.js";

/**
 * Revoked devices stay (a revoked id never comes back) and so accumulate: getDevices lists every live device
 * (at most MAX_DEVICES_PER_DID of them, as registration allows) and only the most recently revoked ones.
 */
export const REVOKED_DEVICES_LISTED = 20;

export interface RegisteredDevice {
  deviceId: string;
  credentialIdentity: string;
}

export interface RegisterDevice {
  did: string;
  deviceId: string;
  /** Given: the device's name becomes it (also on a repeat). Omitted: the name stays as it is. */
  name: string | undefined;
  maxDevices: number;
  now: Date;
}

/**
 * Registers a device of `did`, idempotently: registering a live device again changes nothing but its name (when
 * one is given) and answers the same. A revoked id is refused for good (403 DeviceRevoked); a new device beyond
 * `maxDevices` live ones is 400 TooManyDevices. Registrations of one DID are serialized by a transaction-scoped
 * advisory lock, so the count the limit is checked against is the committed one, whatever runs concurrently.
 * The count is a second statement on purpose: one that waited for the lock would read as of its own start.
 */
export async function registerDevice(db: Queryable, request: RegisterDevice): Promise<RegisteredDevice> {
  const { did, deviceId } = request;
  const [row] = await db.transaction(async (tx) => {
    await tx.query(`SELECT pg_advisory_xact_lock($1, hashtext($2))`, [ADVISORY_LOCK.deviceRegistration, did]);
    return tx.query<{ revoked: boolean | null; inserted: number }>(
      `WITH existing AS (
         SELECT revoked_at IS NOT NULL AS revoked FROM devices WHERE did = $1 AND device_id = $2
       ), inserted AS (
         INSERT INTO devices (did, device_id, name, created_at, last_seen_at)
         SELECT $1, $2, $3, $4, $4
          WHERE NOT EXISTS (SELECT 1 FROM existing)
            AND (SELECT count(*) FROM devices WHERE did = $1 AND revoked_at IS NULL) < $5
         RETURNING 1
       ), renamed AS (
         UPDATE devices SET name = $3
          WHERE did = $1 AND device_id = $2 AND revoked_at IS NULL AND $3::text IS NOT NULL
            AND name IS DISTINCT FROM $3::text
       )
       SELECT (SELECT revoked FROM existing) AS revoked, (SELECT count(*) FROM inserted)::int AS inserted`,
      [did, deviceId, request.name ?? null, request.now, request.maxDevices],
    );
  });
  if (row!.revoked) throw deviceRevoked();
  if (row!.revoked === null && row!.inserted === 0) throw tooManyDevices(request.maxDevices);
  return { deviceId, credentialIdentity: credentialIdentity(did, deviceId) };
}

export interface DeviceView {
  deviceId: string;
  name?: string;
  createdAt: string;
  lastSeenAt: string;
  revoked: boolean;
}

/** The DID's devices: every live one and the REVOKED_DEVICES_LISTED most recently revoked, oldest first. */
export async function listDevices(db: Queryable, did: string): Promise<{ devices: DeviceView[] }> {
  const rows = await db.query<{
    device_id: string;
    name: string | null;
    created_at: Date;
    last_seen_at: Date;
    revoked: boolean;
  }>(
    `SELECT device_id, name, created_at, last_seen_at, revoked_at IS NOT NULL AS revoked
       FROM (SELECT * FROM devices WHERE did = $1 AND revoked_at IS NULL
             UNION ALL
             (SELECT * FROM devices WHERE did = $1 AND revoked_at IS NOT NULL
               ORDER BY revoked_at DESC, device_id LIMIT $2)) d
      ORDER BY created_at, device_id`,
    [did, REVOKED_DEVICES_LISTED],
  );
  return {
    devices: rows.map((row) => ({
      deviceId: row.device_id,
      ...(row.name === null ? {} : { name: row.name }),
      createdAt: row.created_at.toISOString(),
      lastSeenAt: row.last_seen_at.toISOString(),
      revoked: row.revoked,
    })),
  };
}

/**
 * Revokes a device of `did` in one transaction, taking locks in the shared order (device row, then
 * conversations in id order, then welcome and key package rows):
 * - the device row is marked revoked (requireDevice refuses it from then on; a processCommit adding it waits
 *   on this row lock and then sees it revoked);
 * - each conversation whose roster still holds it (checked again under the conversation locks: a commit may
 *   have removed it meanwhile) gets a `deviceRevoked` membership event, so that a member commits its removal;
 * - its live welcomes are retired, and its key packages never handed out are deleted, last-resort ones too
 *   (those are handed out again and again). Packages already handed out stay: a welcome may be built from one.
 * Revoking a revoked device again changes nothing and answers the same; an unknown one is 403 UnknownDevice.
 * `notified` lists the conversations that got the event, whose streams the caller wakes once this committed.
 */
export async function revokeDevice(
  db: Queryable,
  did: string,
  deviceId: string,
  now: Date,
): Promise<{ revoked: true; notified: string[] }> {
  return db.transaction(async (tx) => {
    const [row] = await tx.query<{ found: boolean; revoked_now: boolean }>(
      `WITH target AS (
         SELECT revoked_at FROM devices WHERE did = $1 AND device_id = $2 FOR UPDATE
       ), revoked AS (
         UPDATE devices d SET revoked_at = $3 FROM target
          WHERE d.did = $1 AND d.device_id = $2 AND target.revoked_at IS NULL
         RETURNING 1
       )
       SELECT EXISTS (SELECT 1 FROM target) AS found, EXISTS (SELECT 1 FROM revoked) AS revoked_now`,
      [did, deviceId, now],
    );
    if (!row!.found) throw unknownDevice();
    if (!row!.revoked_now) return { revoked: true, notified: [] };

    const held = await tx.query<{ convo_id: string }>(
      `SELECT convo_id FROM roster WHERE did = $1 AND device_id = $2 ORDER BY convo_id`,
      [did, deviceId],
    );
    const locked = new Map<string, LockedConvo>();
    for (const { convo_id } of held) locked.set(convo_id, await lockConvo(tx, convo_id, did));
    const notified: string[] = [];
    if (locked.size > 0) {
      const still = await tx.query<{ convo_id: string }>(
        `SELECT convo_id FROM roster
          WHERE did = $1 AND device_id = $2 AND convo_id IN (SELECT jsonb_array_elements_text($3::text::jsonb))
          ORDER BY convo_id`,
        [did, deviceId, JSON.stringify([...locked.keys()])],
      );
      for (const { convo_id } of still) {
        await recordConvoChange(tx, locked.get(convo_id)!, {
          sender: did,
          membership: [{ type: "deviceRevoked", did, deviceId, actor: did }],
          now,
        });
        notified.push(convo_id);
      }
    }

    await retireDeviceWelcomes(tx, did, deviceId, now);
    await tx.query(
      `DELETE FROM key_packages WHERE owner_did = $1 AND device_id = $2 AND (handed_out_at IS NULL OR last_resort)`,
      [did, deviceId],
    );
    return { revoked: true, notified };
  });
}
