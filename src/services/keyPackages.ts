import type { Queryable } from "../db/driver.js";
import { bytesOut, encodeBase64 } from "../bytes.js";

/** A key package ready to store: validated bytes, the server-computed hash and the (capped) expiry. */
export interface NewKeyPackage {
  bytes: Uint8Array;
  hash: string;
  cipherSuite: string;
  expiresAt: Date;
}

export interface PublishResult {
  published: number;
  duplicates: number;
}

/**
 * Stores the owner's key packages in one statement. A package already stored for this owner
 * (same bytes, same hash) only gets its expiry refreshed and counts as a duplicate, as does a
 * repeat within the batch. A package already handed out stays handed out: MLS forbids reusing one.
 */
export async function publishKeyPackages(
  db: Queryable,
  owner: string,
  packages: NewKeyPackage[],
  now: Date,
): Promise<PublishResult> {
  // ON CONFLICT DO UPDATE may touch a row only once per statement: collapse repeats, keeping the latest expiry.
  const byHash = new Map<string, NewKeyPackage>();
  for (const pkg of packages) {
    const seen = byHash.get(pkg.hash);
    if (!seen || seen.expiresAt < pkg.expiresAt) byHash.set(pkg.hash, pkg);
  }
  // Rows are inserted in hash order, so two concurrent batches sharing packages lock them in one order.
  const ordered = [...byHash.values()].sort((a, b) => (a.hash < b.hash ? -1 : a.hash > b.hash ? 1 : 0));
  const rows = ordered.map((pkg, n) => ({
    n,
    key_package: encodeBase64(pkg.bytes),
    hash: pkg.hash,
    cipher_suite: pkg.cipherSuite,
    expires_at: pkg.expiresAt.toISOString(),
  }));
  // xmax = 0 on a returned row means it was inserted rather than updated by ON CONFLICT.
  const [counts] = await db.query<{ inserted: number }>(
    `WITH stored AS (
       INSERT INTO key_packages (owner_did, cipher_suite, key_package, hash, expires_at, created_at)
       SELECT $1, r.cipher_suite, decode(r.key_package, 'base64'), r.hash, r.expires_at, $2
         FROM jsonb_to_recordset($3::text::jsonb) AS r(n int, key_package text, hash text, cipher_suite text, expires_at timestamptz)
        ORDER BY r.n
       ON CONFLICT (owner_did, hash) DO UPDATE SET expires_at = EXCLUDED.expires_at
       RETURNING (xmax = 0) AS inserted
     )
     SELECT count(*) FILTER (WHERE inserted) AS inserted FROM stored`,
    [owner, now, JSON.stringify(rows)],
  );
  const published = Number(counts?.inserted ?? 0);
  return { published, duplicates: packages.length - published };
}

export interface HandedOutKeyPackage {
  did: string;
  keyPackage: { $bytes: string };
  cipherSuite: string;
  keyPackageHash: string;
}

export interface ClaimResult {
  keyPackages: HandedOutKeyPackage[];
  missing: string[];
}

/**
 * Packages one caller may take of one owner per reservation: enough to remove and re-add someone a
 * couple of times, too few to drain an owner (one per caller would leave an honest re-add empty-handed).
 */
const PACKAGES_PER_RESERVATION = 3;

/** Advisory lock class of getKeyPackages: one claim at a time per (caller, owner). */
const RESERVATION_LOCK_CLASS = 71_460;

/**
 * Hands out at most one unexpired key package per DID, reserved for `caller`: a caller handed one of
 * that owner's packages within `reservationSeconds` gets the same package back while it is usable (not
 * consumed, not used by a welcome); once used, a fresh one, up to PACKAGES_PER_RESERVATION per
 * reservation, and then nothing (the owner is `missing`) until the reservation has passed. So a
 * retried GET burns nothing and no caller drains another user's packages (a device's last-resort
 * package, with the devices work, covers what many callers together could still take). Otherwise the
 * oldest never handed-out package is marked handed out to it. Claims by one caller for one owner are
 * serialized by a transaction-scoped advisory lock, taken in DID order; concurrent callers skip each
 * other's locked rows, so no package is ever given to two callers. (DISTINCT ON cannot be combined
 * with FOR UPDATE, hence one LIMIT 1 lateral subquery per DID.)
 */
export async function claimKeyPackages(
  db: Queryable,
  dids: string[],
  cipherSuite: string | undefined,
  caller: string,
  now: Date,
  reservationSeconds: number,
): Promise<ClaimResult> {
  const requested = [...new Set(dids)];
  const ordered = [...requested].sort();
  const reservedSince = new Date(now.getTime() - reservationSeconds * 1000);
  const rows = await db.transaction(async (tx) => {
    await tx.query(
      `SELECT count(pg_advisory_xact_lock($2, hashtext($3 || ' ' || d.did)))
         FROM jsonb_array_elements_text($1::text::jsonb) AS d(did)`,
      [JSON.stringify(ordered), RESERVATION_LOCK_CLASS, caller],
    );
    return tx.query<{ owner_did: string; key_package: Uint8Array; cipher_suite: string; hash: string }>(
      `WITH requested AS (
         SELECT d.did FROM jsonb_array_elements_text($1::text::jsonb) AS d(did)
       ), recent AS (
         -- The owner's packages this caller was handed within the reservation (any cipher suite): the
         -- latest comes back while usable, and once PACKAGES_PER_RESERVATION were handed out, used or
         -- not, no fresh one is claimed until the reservation has passed.
         SELECT r.did, h.id, h.usable, h.handed
           FROM requested r
           CROSS JOIN LATERAL (
             SELECT k.id,
                    k.consumed_at IS NULL AND k.expires_at > $2
                      AND ($3::text IS NULL OR k.cipher_suite = $3::text)
                      AND NOT EXISTS (
                        SELECT 1 FROM welcome_messages w WHERE w.recipient_did = k.owner_did AND w.key_package_hash = k.hash
                      ) AS usable,
                    count(*) OVER () AS handed
               FROM key_packages k
              WHERE k.owner_did = r.did AND k.handed_out_to = $4 AND k.handed_out_at > $5
              ORDER BY k.handed_out_at DESC, k.id DESC
              LIMIT 1
           ) h
       ), picked AS (
         SELECT p.id
           FROM requested r
           CROSS JOIN LATERAL (
             SELECT k.id FROM key_packages k
              WHERE k.owner_did = r.did AND k.handed_out_at IS NULL AND k.expires_at > $2
                AND ($3::text IS NULL OR k.cipher_suite = $3::text)
                AND NOT EXISTS (SELECT 1 FROM recent WHERE recent.did = r.did AND (recent.usable OR recent.handed >= $6))
              ORDER BY k.created_at, k.id
              LIMIT 1
              FOR UPDATE SKIP LOCKED
           ) p
       ), claimed AS (
         UPDATE key_packages k SET handed_out_at = $2, handed_out_to = $4
           FROM picked WHERE k.id = picked.id
         RETURNING k.owner_did, k.key_package, k.cipher_suite, k.hash
       )
       SELECT owner_did, key_package, cipher_suite, hash FROM claimed
       UNION ALL
       SELECT k.owner_did, k.key_package, k.cipher_suite, k.hash FROM recent JOIN key_packages k ON k.id = recent.id WHERE recent.usable`,
      [JSON.stringify(requested), now, cipherSuite ?? null, caller, reservedSince, PACKAGES_PER_RESERVATION],
    );
  });
  const byOwner = new Map(rows.map((row) => [row.owner_did, row]));
  const keyPackages: HandedOutKeyPackage[] = [];
  const missing: string[] = [];
  for (const did of requested) {
    const row = byOwner.get(did);
    if (!row) {
      missing.push(did);
      continue;
    }
    keyPackages.push({
      did,
      keyPackage: bytesOut(row.key_package),
      cipherSuite: row.cipher_suite,
      keyPackageHash: row.hash,
    });
  }
  return { keyPackages, missing };
}

/** How many of the owner's key packages could still be handed out at `now`. */
export async function countAvailableKeyPackages(
  db: Queryable,
  owner: string,
  cipherSuite: string | undefined,
  now: Date,
): Promise<number> {
  const [row] = await db.query<{ available: number }>(
    `SELECT count(*) AS available FROM key_packages
      WHERE owner_did = $1 AND handed_out_at IS NULL AND expires_at > $2
        AND ($3::text IS NULL OR cipher_suite = $3::text)`,
    [owner, now, cipherSuite ?? null],
  );
  return Number(row?.available ?? 0);
}
