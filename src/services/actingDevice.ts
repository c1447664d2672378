import type { Queryable } from "../db/driver.js";
import { deviceRevoked, unknownDevice } from "../errors.js";

/** The device id of a DID's implicit device: the one whose credential identity is the bare DID. */
export const IMPLICIT_DEVICE = "";

const DEVICE_ID = /^[A-Za-z0-9._-]{1,64}$/;
const DID = /^did:[a-z]+:[a-zA-Z0-9._:%-]*[a-zA-Z0-9._-]$/;

/** A device's MLS basic credential identity: `<did>#<deviceId>`, or the bare DID for the implicit device. */
export function credentialIdentity(did: string, deviceId: string): string {
  return deviceId === IMPLICIT_DEVICE ? did : `${did}#${deviceId}`;
}

/**
 * The DID and device a credential identity names, or undefined when it names neither (a DID never holds `#`).
 *
 * @example
 * parseCredentialIdentity("did:plc:bob#laptop") // { did: "did:plc:bob", deviceId: "laptop" }
 */
export function parseCredentialIdentity(identity: string): { did: string; deviceId: string } | undefined {
  const hash = identity.indexOf("#");
  const did = hash < 0 ? identity : identity.slice(0, hash);
  if (did.length > 2048 || !DID.test(did)) return undefined;
  if (hash < 0) return { did, deviceId: IMPLICIT_DEVICE };
  const deviceId = identity.slice(hash + 1);
  return DEVICE_ID.test(deviceId) ? { did, deviceId } : undefined;
}

/** lastSeenAt is written at most this often per device, so a busy device does not write on every request. */
export const LAST_SEEN_GRANULARITY = "1 minute";

/** SQL: whether the device (`did`, `deviceId`: SQL expressions) is revoked; no row when it is not registered. */
export const deviceRevokedSql = (did: string, deviceId: string) =>
  `SELECT revoked_at IS NOT NULL AS revoked FROM devices WHERE did = ${did} AND device_id = ${deviceId}`;

/** SQL: moves a live device's lastSeenAt to `now` (at most once per LAST_SEEN_GRANULARITY) when `also` holds. */
export const touchLastSeenSql = (did: string, deviceId: string, now: string, also = "true") =>
  `UPDATE devices SET last_seen_at = ${now}
    WHERE did = ${did} AND device_id = ${deviceId} AND revoked_at IS NULL
      AND last_seen_at < ${now}::timestamptz - interval '${LAST_SEEN_GRANULARITY}' AND ${also}`;

/**
 * The device a request acts as: the implicit one when `deviceId` is omitted (no round trip), else a device
 * registered to `did` and not revoked (403 UnknownDevice / DeviceRevoked), whose lastSeenAt moves to `now`.
 */
export async function requireDevice(
  db: Queryable,
  did: string,
  deviceId: string | undefined,
  now: Date,
): Promise<string> {
  if (deviceId === undefined || deviceId === IMPLICIT_DEVICE) return IMPLICIT_DEVICE;
  const [row] = await db.query<{ revoked: boolean }>(
    `WITH device AS (${deviceRevokedSql("$1", "$2")}), seen AS (${touchLastSeenSql("$1", "$2", "$3")})
     SELECT revoked FROM device`,
    [did, deviceId, now],
  );
  if (!row) throw unknownDevice();
  if (row.revoked) throw deviceRevoked();
  return deviceId;
}
