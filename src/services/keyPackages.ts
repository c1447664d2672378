import type { Queryable } from "../db/driver.js";
import { DatabaseError } from "../db/driver.js";
import { encodeBase64 } from "../bytes.js";
import { invalidKeyPackage, invalidRequest } from "../errors.js";
import { ADVISORY_LOCK } from "../db/advisoryLocks.js";

/** A key package ready to store: validated bytes, the server-computed hash and the (capped) expiry. */
export interface NewKeyPackage {
  bytes: Uint8Array;
  hash: string;
  cipherSuite: string;
  expiresAt: Date;
  /** The device its credential identity names: '' for the implicit device (the bare DID). */
  deviceId: string;
  lastResort: boolean;
  /** The leaf's signature public key, verified: the key a group leaf made from this package carries. */
  signatureKey: Uint8Array;
}

export interface PublishResult {
  published: number;
  duplicates: number;
}

/**
 * One statement that stores a batch ($3, JSON) for owner $1 at $2, or nothing at all when a package names a
 * device that is not the owner's registered, unrevoked device (`refused` lists them).
 *
 * Locks, in the order of the brief: the named device rows FOR SHARE (a revocation, which deletes the packages a
 * device left, waits for this statement, and one committed before is seen); then the owner's advisory lock (shared
 * here; a batch with a last-resort package took it exclusively just before, after the same device rows); then key
 * package rows, in hash order (`stored`) and in (device, suite) order (`replaced`).
 *
 * A package already stored (same bytes) only gets its expiry refreshed and keeps its lastResort flag: a one-time
 * package may be in a Welcome already, so it never becomes reusable; a last-resort one may have gone to many callers,
 * so it never becomes one-time. A new last-resort package takes the place of its device's older one for its
 * suite, in place (`replaced`), and a package of this batch that is that older one is not refreshed.
 */
const PUBLISH_SQL = `WITH input AS (
    SELECT * FROM jsonb_to_recordset($3::text::jsonb)
      AS r(key_package text, hash text, cipher_suite text, expires_at timestamptz, device_id text, last_resort boolean,
            signature_key text)
  ), live AS (
    SELECT d.device_id FROM devices d
     WHERE d.did = $1 AND d.device_id IN (SELECT device_id FROM input) AND d.revoked_at IS NULL
     ORDER BY d.device_id
       FOR SHARE
  ), refused AS (
    SELECT DISTINCT device_id FROM input WHERE device_id <> '' AND device_id NOT IN (SELECT device_id FROM live)
  ), accepted AS (
    SELECT * FROM input WHERE NOT EXISTS (SELECT 1 FROM refused)
  ), owner_lock AS (
    SELECT pg_advisory_xact_lock_shared($4, hashtext($1))::text AS taken FROM (SELECT count(*) FROM live) AS after_devices
  ), known AS (
    SELECT k.hash, k.device_id, k.cipher_suite, k.last_resort FROM key_packages k
     WHERE k.owner_did = $1 AND k.hash IN (SELECT hash FROM accepted)
  ), new_last_resort AS (
    SELECT * FROM accepted WHERE last_resort AND hash NOT IN (SELECT hash FROM known)
  ), others AS (
    SELECT a.* FROM accepted a
     WHERE a.hash NOT IN (SELECT hash FROM new_last_resort)
       AND NOT EXISTS (
         SELECT 1 FROM known k JOIN new_last_resort n ON n.device_id = k.device_id AND n.cipher_suite = k.cipher_suite
          WHERE k.last_resort AND k.hash = a.hash)
  ), stored AS (
    INSERT INTO key_packages (owner_did, device_id, last_resort, cipher_suite, key_package, hash, expires_at, created_at,
                              signature_key)
    SELECT $1, o.device_id, o.last_resort, o.cipher_suite, decode(o.key_package, 'base64'), o.hash, o.expires_at, $2,
           decode(o.signature_key, 'base64')
      FROM others o
     WHERE EXISTS (SELECT 1 FROM owner_lock)
     ORDER BY o.hash
    ON CONFLICT (owner_did, hash) DO UPDATE SET expires_at = EXCLUDED.expires_at
    RETURNING xmax = 0 AS inserted
  ), replaced AS (
    INSERT INTO key_packages (owner_did, device_id, last_resort, cipher_suite, key_package, hash, expires_at, created_at,
                              signature_key)
    SELECT $1, n.device_id, true, n.cipher_suite, decode(n.key_package, 'base64'), n.hash, n.expires_at, $2,
           decode(n.signature_key, 'base64')
      FROM new_last_resort n
     WHERE EXISTS (SELECT 1 FROM owner_lock)
     ORDER BY n.device_id, n.cipher_suite
    ON CONFLICT (owner_did, device_id, cipher_suite) WHERE last_resort DO UPDATE
      SET key_package = EXCLUDED.key_package, hash = EXCLUDED.hash, expires_at = EXCLUDED.expires_at,
          created_at = EXCLUDED.created_at, signature_key = EXCLUDED.signature_key
    RETURNING 1
  )
  SELECT (SELECT json_agg(device_id ORDER BY device_id) FROM refused)::text AS refused,
         (SELECT count(*) FROM stored WHERE inserted) + (SELECT count(*) FROM replaced) AS published`;

/** The devices named ($2, JSON) FOR SHARE, then the owner's ($1) publishing lock exclusively: the brief's lock order. */
const LOCK_OWNER_EXCLUSIVELY_SQL = `SELECT pg_advisory_xact_lock($3, hashtext($1)) FROM (
    SELECT count(*) FROM (
      SELECT 1 FROM devices WHERE did = $1 AND device_id IN (SELECT jsonb_array_elements_text($2::text::jsonb))
       ORDER BY device_id
         FOR SHARE
    ) AS named
  ) AS after_devices`;

/**
 * Stores the owner's key packages. A package already stored for this owner (same bytes, same hash) only gets
 * its expiry refreshed and counts as a duplicate, as does a repeat within the batch. A package already handed out
 * stays handed out: MLS forbids reusing one. A package naming a device that is not the owner's registered,
 * unrevoked device refuses the whole batch (400 InvalidKeyPackage), before anything is written.
 *
 * A batch of one-time packages is one statement, under the owner's advisory lock in shared mode: such batches run
 * side by side and meet only on (owner, hash), in hash order. A batch with a last-resort package first takes that
 * lock exclusively, in its own statement, so no other batch of the owner is running and the replacing statement's
 * snapshot sees every package committed before it (a last-resort package is published rarely: once per device and
 * suite, now and then). So no publisher ever waits for another's uncommitted rows under two different unique indexes,
 * which could deadlock (a package published at once as last-resort and as one-time by two batches). The rare race
 * that still trips a unique index (cleanup deleting a package republished at that moment) is retried once.
 */
export async function publishKeyPackages(
  db: Queryable,
  owner: string,
  packages: NewKeyPackage[],
  now: Date,
): Promise<PublishResult> {
  const batch = collapse(packages);
  const rows = JSON.stringify(
    batch.map((pkg) => ({
      key_package: encodeBase64(pkg.bytes),
      hash: pkg.hash,
      cipher_suite: pkg.cipherSuite,
      expires_at: pkg.expiresAt.toISOString(),
      device_id: pkg.deviceId,
      last_resort: pkg.lastResort,
      signature_key: encodeBase64(pkg.signatureKey),
    })),
  );
  const publish = async (q: Queryable) => {
    const [row] = await q.query<{ refused: string | null; published: number }>(PUBLISH_SQL, [
      owner,
      now,
      rows,
      ADVISORY_LOCK.keyPackagePublish,
    ]);
    if (row?.refused) {
      const devices = (JSON.parse(row.refused) as string[]).slice(0, 5).join(", ");
      throw invalidKeyPackage(`a key package names device(s) ${devices}, not registered to the caller or revoked`);
    }
    return Number(row?.published ?? 0);
  };
  const published = batch.some((pkg) => pkg.lastResort)
    ? await retriedOnce(() =>
        db.transaction(async (tx) => {
          await tx.query(LOCK_OWNER_EXCLUSIVELY_SQL, [
            owner,
            JSON.stringify([...new Set(batch.map((pkg) => pkg.deviceId))]),
            ADVISORY_LOCK.keyPackagePublish,
          ]);
          return publish(tx);
        }),
      )
    : await publish(db);
  return { published, duplicates: packages.length - published };
}

/**
 * The batch with repeats collapsed (ON CONFLICT may touch a row only once per statement), keeping each package's
 * latest expiry, in hash order. A package given with two lastResort flags, or two last-resort packages for one
 * device and cipher suite, make the batch ambiguous: 400.
 */
function collapse(packages: NewKeyPackage[]): NewKeyPackage[] {
  const byHash = new Map<string, NewKeyPackage>();
  for (const pkg of packages) {
    const seen = byHash.get(pkg.hash);
    if (seen && seen.lastResort !== pkg.lastResort) {
      throw invalidRequest("the batch holds one key package twice with different lastResort flags");
    }
    if (!seen || seen.expiresAt < pkg.expiresAt) byHash.set(pkg.hash, pkg);
  }
  const lastResorts = new Set<string>();
  for (const pkg of byHash.values()) {
    if (!pkg.lastResort) continue;
    const slot = JSON.stringify([pkg.deviceId, pkg.cipherSuite]);
    if (lastResorts.has(slot)) {
      throw invalidRequest("the batch holds two last-resort key packages for one device and cipher suite");
    }
    lastResorts.add(slot);
  }
  return [...byHash.values()].sort((a, b) => (a.hash < b.hash ? -1 : a.hash > b.hash ? 1 : 0));
}

/** A unique violation (23505) or a row touched twice (21000): a row appeared or vanished after the snapshot. */
async function retriedOnce<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (error instanceof DatabaseError && (error.code === "23505" || error.code === "21000")) return work();
    throw error;
  }
}

/**
 * How many of one device's one-time key packages could still be handed out at `now` (last-resort ones are the
 * fallback, not stock).
 */
export async function countAvailableKeyPackages(
  db: Queryable,
  owner: string,
  { cipherSuite, deviceId }: { cipherSuite?: string; deviceId: string },
  now: Date,
): Promise<number> {
  const [row] = await db.query<{ available: number }>(
    `SELECT count(*) AS available FROM key_packages
      WHERE owner_did = $1 AND device_id = $4 AND handed_out_at IS NULL AND NOT last_resort AND expires_at > $2
        AND ($3::text IS NULL OR cipher_suite = $3::text)`,
    [owner, now, cipherSuite ?? null, deviceId],
  );
  return Number(row?.available ?? 0);
}
