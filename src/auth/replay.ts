import type { Queryable } from "../db/driver.js";

/** The token ids this server records: printable ASCII without spaces, at most 256 characters. */
export const JTI = /^[\x21-\x7e]{1,256}$/;

/**
 * Records a token's `jti` for its issuer until `expiresAt`; false when it was already recorded and
 * has not expired (a replay). One statement, so it holds across instances sharing the database: of
 * two concurrent uses exactly one inserts. A leftover row whose token has expired (cleanup had not run
 * yet) is taken over rather than refusing a new token that happens to reuse the id.
 */
export async function recordTokenUse(
  db: Queryable,
  issuer: string,
  jti: string,
  expiresAt: Date,
  now: Date,
): Promise<boolean> {
  const rows = await db.query(
    `INSERT INTO seen_tokens (issuer_did, jti, expires_at) VALUES ($1, $2, $3)
     ON CONFLICT (issuer_did, jti) DO UPDATE SET expires_at = EXCLUDED.expires_at
       WHERE seen_tokens.expires_at <= $4
     RETURNING 1 AS recorded`,
    [issuer, jti, expiresAt, now],
  );
  return rows.length === 1;
}
