import type { Queryable } from "../db/driver.js";
import { XrpcError } from "../errors.js";

export const welcomeNotFound = () => new XrpcError(404, "WelcomeNotFound", "no welcome for you in this conversation");
export const welcomeGone = () =>
  new XrpcError(410, "WelcomeGone", "the welcome was consumed or its grace period has passed");

/**
 * Ends the grace period of the recipient's in-flight welcomes fetched before `cutoff`: they become
 * `expired` and the key package each was built from is consumed. Returns how many expired.
 */
export async function expireWelcomes(db: Queryable, cutoff: Date, now: Date, scope?: { convoId: string; recipient: string }) {
  const rows = await db.query(
    `WITH expired AS (
       UPDATE welcome_messages SET state = 'expired'
        WHERE state = 'in_flight' AND fetched_at <= $1
          AND ($3::text IS NULL OR (convo_id = $3 AND recipient_did = $4))
       RETURNING recipient_did, key_package_hash
     ), consumed AS (
       UPDATE key_packages k SET consumed_at = $2
         FROM expired e
        WHERE k.owner_did = e.recipient_did AND k.hash = e.key_package_hash AND k.consumed_at IS NULL
     )
     SELECT 1 FROM expired`,
    [cutoff, now, scope?.convoId ?? null, scope?.recipient ?? null],
  );
  return rows.length;
}

/**
 * Phase one: hands out the recipient's live welcome and marks it in flight. A re-fetch within
 * the grace period returns the same bytes; concurrent fetches serialize on the row lock and
 * leave one in-flight row. Grace expiry happens before this (welcomeGrace middleware).
 */
export async function fetchWelcome(db: Queryable, convoId: string, recipient: string, now: Date): Promise<Uint8Array> {
  const [row] = await db.query<{ welcome: Uint8Array }>(
    `WITH live AS (
       SELECT id FROM welcome_messages
        WHERE convo_id = $1 AND recipient_did = $2 AND state IN ('available', 'in_flight')
          FOR UPDATE
     )
     UPDATE welcome_messages w SET state = 'in_flight', fetched_at = coalesce(w.fetched_at, $3)
       FROM live WHERE w.id = live.id AND w.state IN ('available', 'in_flight')
     RETURNING w.welcome`,
    [convoId, recipient, now],
  );
  if (row) return row.welcome;
  throw (await hasPastWelcome(db, convoId, recipient)) ? welcomeGone() : welcomeNotFound();
}

/**
 * Phase two: `success` consumes the welcome and its key package; a failure records the details
 * and leaves it fetchable until the grace period ends. Confirming a consumed welcome again is fine.
 */
export async function confirmWelcome(
  db: Queryable,
  convoId: string,
  recipient: string,
  outcome: { success: boolean; errorDetails?: string },
  now: Date,
): Promise<{ confirmed: boolean }> {
  const [row] = outcome.success
    ? await db.query<{ state: string }>(
        `WITH done AS (
           UPDATE welcome_messages
              SET state = 'consumed', confirmed_at = $3, fetched_at = coalesce(fetched_at, $3),
                  error_details = coalesce($4, error_details)
            WHERE convo_id = $1 AND recipient_did = $2 AND state IN ('available', 'in_flight')
           RETURNING recipient_did, key_package_hash, state
         ), consumed AS (
           UPDATE key_packages k SET consumed_at = $3
             FROM done d WHERE k.owner_did = d.recipient_did AND k.hash = d.key_package_hash AND k.consumed_at IS NULL
         )
         SELECT state FROM done`,
        [convoId, recipient, now, outcome.errorDetails ?? null],
      )
    : await db.query<{ state: string }>(
        `UPDATE welcome_messages SET error_details = $3
          WHERE convo_id = $1 AND recipient_did = $2 AND state IN ('available', 'in_flight')
         RETURNING state`,
        [convoId, recipient, outcome.errorDetails ?? null],
      );
  if (row) return { confirmed: outcome.success };
  const [last] = await db.query<{ state: string }>(
    `SELECT state FROM welcome_messages WHERE convo_id = $1 AND recipient_did = $2
      ORDER BY created_at DESC, id LIMIT 1`,
    [convoId, recipient],
  );
  if (!last) throw welcomeNotFound();
  if (last.state === "consumed") return { confirmed: true };
  throw welcomeGone();
}

async function hasPastWelcome(db: Queryable, convoId: string, recipient: string): Promise<boolean> {
  const [row] = await db.query(`SELECT 1 FROM welcome_messages WHERE convo_id = $1 AND recipient_did = $2 LIMIT 1`, [
    convoId,
    recipient,
  ]);
  return row !== undefined;
}
