import type { Queryable } from "../db/driver.js";
import { bytesOut } from "../bytes.js";
import { ADVISORY_LOCK } from "../db/advisoryLocks.js";

export interface HandedOutKeyPackage {
  did: string;
  /** The device the package belongs to: '' for the DID's implicit device. */
  deviceId: string;
  keyPackage: { $bytes: string };
  cipherSuite: string;
  keyPackageHash: string;
  lastResort: boolean;
}

export interface ClaimResult {
  keyPackages: HandedOutKeyPackage[];
  missing: string[];
  /** DIDs left out to keep the answer within its byte bound: ask again for them. Absent when none. */
  deferred?: string[];
}

export interface ClaimRequest {
  dids: string[];
  cipherSuite?: string;
  caller: string;
  now: Date;
  reservationSeconds: number;
  /** MAX_PAGE_BYTES: the most JSON the answer may hold (its first DID's packages are always answered). */
  maxBytes: number;
}

/**
 * Packages one caller may take of one owner's device per reservation: enough to remove and re-add someone a
 * couple of times, too few to drain a device (one per caller would leave an honest re-add empty-handed).
 */
const PACKAGES_PER_RESERVATION = 3;

/** JSON of an item besides its bytes and strings: the field names, quotes and the 64-character hash. */
const ITEM_OVERHEAD_BYTES = 192;

/**
 * Hands out one key package per live device (the implicit device '' and every registered, unrevoked device) of each
 * DID, in the order the DIDs were asked for and devices by id. Per device, for `caller`:
 *
 * 1. its reservation: the device's latest package handed to this caller within `reservationSeconds`, while usable
 *    (not consumed, not expired, of the suite asked for, not used by a welcome) comes back, so a retried GET burns
 *    nothing;
 * 2. else the device's oldest one-time package never handed out, marked handed out to the caller; at most
 *    PACKAGES_PER_RESERVATION per (caller, owner, device) per reservation, so no caller drains another's device;
 * 3. else (none left, or the caller took its share) the device's last-resort package: never marked, never
 *    consumed, handed to anyone who gets nothing else.
 *
 * Expired packages and revoked devices' packages never. A DID none of whose devices has one is `missing`.
 *
 * The byte bound (100 DIDs of up to MAX_DEVICES_PER_DID + 1 devices of packages up to MAX_KEY_PACKAGE_BYTES each
 * could be tens of MiB): the answer holds whole DIDs, all of a DID's devices or none, in the order asked, while the
 * estimated JSON fits in `maxBytes` (the first DID always); the DIDs past it are `deferred`, and their one-time
 * packages are NOT marked handed out (the statement picks and locks them, then claims only the ones it answers), so
 * asking again for the deferred DIDs burns nothing. A deferred package stays locked until this statement commits:
 * a concurrent caller skips it like any package being claimed and takes the device's next one.
 *
 * Claims by one caller for one owner are serialized by a transaction-scoped advisory lock, taken in DID order;
 * concurrent callers skip each other's locked rows (FOR UPDATE SKIP LOCKED), so no one-time package is ever given to
 * two callers. (DISTINCT ON cannot be combined with FOR UPDATE, hence one LIMIT 1 lateral subquery per device.)
 */
export async function claimKeyPackages(db: Queryable, request: ClaimRequest): Promise<ClaimResult> {
  const requested = [...new Set(request.dids)];
  const { caller, now, cipherSuite } = request;
  const reservedSince = new Date(now.getTime() - request.reservationSeconds * 1000);
  // Every DID asked for appears once more in the answer (in an item, `missing` or `deferred`): keep room for them.
  const listBytes = requested.reduce((sum, did) => sum + did.length + 4, 64);
  const rows = await db.transaction(async (tx) => {
    await tx.query(
      `SELECT count(pg_advisory_xact_lock($2, hashtext($3 || ' ' || d.did)))
         FROM (SELECT d.did FROM jsonb_array_elements_text($1::text::jsonb) AS d(did) ORDER BY d.did) AS d`,
      [JSON.stringify(requested), ADVISORY_LOCK.keyPackageReservation, caller],
    );
    return tx.query<ClaimRow>(CLAIM_SQL, [
      JSON.stringify(requested),
      now,
      cipherSuite ?? null,
      caller,
      reservedSince,
      PACKAGES_PER_RESERVATION,
      request.maxBytes - listBytes,
      ITEM_OVERHEAD_BYTES,
    ]);
  });
  const answered = new Set<string>();
  const postponed = new Set<string>();
  const keyPackages: HandedOutKeyPackage[] = [];
  for (const row of rows) {
    if (!row.key_package) {
      postponed.add(row.did);
      continue;
    }
    answered.add(row.did);
    keyPackages.push({
      did: row.did,
      deviceId: row.device_id,
      keyPackage: bytesOut(row.key_package),
      cipherSuite: row.cipher_suite,
      keyPackageHash: row.hash,
      lastResort: row.last_resort,
    });
  }
  const missing = requested.filter((did) => !answered.has(did) && !postponed.has(did));
  const deferred = requested.filter((did) => postponed.has(did));
  return { keyPackages, missing, ...(deferred.length > 0 && { deferred }) };
}

interface ClaimRow {
  did: string;
  device_id: string;
  /** Null for a deferred DID's package: it was not answered. */
  key_package: Uint8Array | null;
  cipher_suite: string;
  hash: string;
  last_resort: boolean;
}

/**
 * Parameters: $1 DIDs (JSON, in the order asked), $2 now, $3 cipher suite or null, $4 caller, $5 reservation start,
 * $6 PACKAGES_PER_RESERVATION, $7 bytes the items may take, $8 ITEM_OVERHEAD_BYTES.
 */
const CLAIM_SQL = `WITH requested AS (
    SELECT d.did, d.n FROM jsonb_array_elements_text($1::text::jsonb) WITH ORDINALITY AS d(did, n)
  ), device_list AS (
    SELECT r.did, r.n, '' AS device_id FROM requested r
    UNION ALL
    SELECT r.did, r.n, v.device_id FROM requested r JOIN devices v ON v.did = r.did AND v.revoked_at IS NULL
  ), recent AS (
    -- The device's packages this caller was handed within the reservation (any cipher suite): the latest comes
    -- back while usable, and once PACKAGES_PER_RESERVATION were handed out, used or not, no fresh one is claimed.
    SELECT l.did, l.device_id, h.id, h.usable, h.handed
      FROM device_list l
      CROSS JOIN LATERAL (
        SELECT k.id,
               k.consumed_at IS NULL AND k.expires_at > $2 AND ($3::text IS NULL OR k.cipher_suite = $3::text)
                 AND NOT EXISTS (
                   SELECT 1 FROM welcome_messages w WHERE w.recipient_did = k.owner_did AND w.key_package_hash = k.hash
                 ) AS usable,
               count(*) OVER () AS handed
          FROM key_packages k
         WHERE k.owner_did = l.did AND k.device_id = l.device_id AND k.handed_out_to = $4 AND k.handed_out_at > $5
         ORDER BY k.handed_out_at DESC, k.id DESC
         LIMIT 1
      ) h
  ), picked AS (
    SELECT l.did, l.device_id, p.id
      FROM device_list l
      CROSS JOIN LATERAL (
        SELECT k.id FROM key_packages k
         WHERE k.owner_did = l.did AND k.device_id = l.device_id AND k.handed_out_at IS NULL AND NOT k.last_resort
           AND k.expires_at > $2 AND ($3::text IS NULL OR k.cipher_suite = $3::text)
           AND NOT EXISTS (
             SELECT 1 FROM recent r
              WHERE r.did = l.did AND r.device_id = l.device_id AND (r.usable OR r.handed >= $6)
           )
         ORDER BY k.created_at, k.id
         LIMIT 1
           FOR UPDATE SKIP LOCKED
      ) p
  ), fallback AS (
    SELECT l.did, l.device_id, f.id
      FROM device_list l
      CROSS JOIN LATERAL (
        SELECT k.id FROM key_packages k
         WHERE k.owner_did = l.did AND k.device_id = l.device_id AND k.last_resort AND k.expires_at > $2
           AND ($3::text IS NULL OR k.cipher_suite = $3::text)
         ORDER BY k.created_at DESC, k.id DESC
         LIMIT 1
      ) f
     WHERE NOT EXISTS (SELECT 1 FROM recent r WHERE r.did = l.did AND r.device_id = l.device_id AND r.usable)
       AND NOT EXISTS (SELECT 1 FROM picked p WHERE p.did = l.did AND p.device_id = l.device_id)
  ), chosen AS (
    SELECT did, device_id, id, true AS fresh FROM picked
    UNION ALL
    SELECT did, device_id, id, false FROM recent WHERE usable
    UNION ALL
    SELECT did, device_id, id, false FROM fallback
  ), sized AS (
    -- An upper estimate of each item's JSON (base64 of the bytes plus its strings), summed per DID, without
    -- reading the bytes: octet_length of a stored bytea does not detoast it.
    SELECT c.did, r.n, c.device_id, c.id, c.fresh,
           sum(4 * ((octet_length(k.key_package) + 2) / 3) + octet_length(c.did) + octet_length(c.device_id)
               + octet_length(k.cipher_suite) + $8) OVER (PARTITION BY c.did) AS did_bytes
      FROM chosen c JOIN key_packages k ON k.id = c.id JOIN requested r ON r.did = c.did
  ), page AS (
    SELECT did, row_number() OVER w AS pos, sum(did_bytes) OVER w AS total
      FROM (SELECT DISTINCT did, n, did_bytes FROM sized) AS per_did
    WINDOW w AS (ORDER BY n ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
  ), kept AS (
    SELECT did FROM page WHERE pos = 1 OR total <= $7
  ), claimed AS (
    UPDATE key_packages k SET handed_out_at = $2, handed_out_to = $4
      FROM sized s
     WHERE k.id = s.id AND s.fresh AND s.did IN (SELECT did FROM kept)
  )
  SELECT s.did, s.device_id, CASE WHEN s.did IN (SELECT did FROM kept) THEN k.key_package END AS key_package,
         k.cipher_suite, k.hash, k.last_resort
    FROM sized s JOIN key_packages k ON k.id = s.id
   ORDER BY s.n, s.device_id`;
