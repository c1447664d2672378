import type { Queryable } from "../db/driver.js";
import { convoNotFound, deviceRevoked, notMember, unknownDevice } from "../errors.js";
import { deviceRevokedSql, IMPLICIT_DEVICE, touchLastSeenSql } from "./actingDevice.js";
import { isActiveMember } from "./sql.js";

/**
 * Records how far one device ($3, '' for the implicit one) of an active member ($2) has read in a
 * conversation ($1): the device check (and its lastSeenAt, as `requireDevice` moves it), the
 * membership check and the upsert in one statement and one commit. Nothing is written unless both
 * checks pass; the returned row says which failed.
 */
const UPDATE_CURSOR_SQL = `WITH device AS (${deviceRevokedSql("$2", "$3")}), convo AS (
  SELECT ${isActiveMember("c.id", "$2")} AS is_member FROM conversations c WHERE c.id = $1
), allowed AS (
  SELECT 1 FROM convo
   WHERE convo.is_member AND ($3 = '' OR EXISTS (SELECT 1 FROM device WHERE NOT device.revoked))
), seen AS (${touchLastSeenSql("$2", "$3", "$5", "EXISTS (SELECT 1 FROM allowed)")}), written AS (
  INSERT INTO read_cursors (convo_id, did, device_id, cursor, updated_at)
  SELECT $1, $2, $3, $4, $5 FROM allowed
  ON CONFLICT (convo_id, did, device_id) DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at
)
SELECT (SELECT revoked FROM device) AS revoked, (SELECT is_member FROM convo) AS is_member`;

export interface CursorUpdate {
  convoId: string;
  did: string;
  /** The reading device: IMPLICIT_DEVICE, or one of `did`'s registered devices. */
  deviceId: string;
  cursor: string;
  now: Date;
}

/**
 * Records a device's read cursor (read cursors are per device). 403 UnknownDevice or DeviceRevoked
 * for a device that is not `did`'s live one, 404 ConvoNotFound, 403 NotMember, in that order.
 */
export async function updateCursor(db: Queryable, update: CursorUpdate): Promise<void> {
  const { convoId, did, deviceId, cursor, now } = update;
  const [row] = await db.query<{ revoked: boolean | null; is_member: boolean | null }>(UPDATE_CURSOR_SQL, [
    convoId,
    did,
    deviceId,
    cursor,
    now,
  ]);
  if (deviceId !== IMPLICIT_DEVICE && row?.revoked == null) throw unknownDevice();
  if (row?.revoked) throw deviceRevoked();
  if (row?.is_member == null) throw convoNotFound();
  if (!row.is_member) throw notMember();
}
