import { ADVISORY_LOCK } from "../db/advisoryLocks.js";
import { isLockTimeout, type Queryable } from "../db/driver.js";
import { XrpcError } from "../errors.js";

/** The idempotency record of one (caller, method, key). */
export type Scope = readonly [callerDid: string, method: string, key: string];

export interface StoredAnswer {
  requestHash: string;
  statusCode: number;
  response: string;
}

/**
 * The advisory lock key of (caller, method, key), as a SQL expression. Callers and methods hold no
 * space, so the joined text names one key; a hash collision only makes two keys wait on each other.
 */
export const keyLockId = (caller: string, method: string, key: string) =>
  `hashtext(${caller} || ' ' || ${method} || ' ' || ${key})`;

/**
 * Claims a key by inserting its row; `set_config` runs first, so a wait for another transaction
 * holding the key waits at most `$7` (the transaction's lock_timeout). The key's advisory lock is
 * taken before the insert and held to the end of the transaction: a batch of sends (SEND_BATCH_SQL)
 * skips a key whose lock is taken rather than waiting on its uncommitted row. Once claimed, the
 * lock_timeout goes back to what it was (`before`: `$8` when given, else the setting found), so the
 * handler's own lock waits are not cut short. A conflict with a committed row does nothing and
 * writes nothing, so a replay stays a read-only transaction; `before` is returned for a take-over.
 */
export const CLAIM_KEY_SQL = `WITH wait AS (
  SELECT coalesce($8::text, current_setting('lock_timeout')) AS before, set_config('lock_timeout', $7, true)
), held AS (
  SELECT wait.before, pg_advisory_xact_lock(${ADVISORY_LOCK.idempotencyKey}, ${keyLockId("$1", "$2", "$3")}) FROM wait
), claimed AS (
  INSERT INTO idempotency_keys (caller_did, method, key, request_hash, created_at, expires_at)
  SELECT $1, $2, $3, $4, $5, $6 FROM held
  ON CONFLICT (caller_did, method, key) DO NOTHING
  RETURNING 1 AS one
)
SELECT held.before, claimed.one IS NOT NULL AS claimed,
       CASE WHEN claimed.one IS NOT NULL THEN set_config('lock_timeout', held.before, true) END AS restored
  FROM held LEFT JOIN claimed ON true`;

/** Stores the handler's answer in the claiming transaction. */
export const STORE_ANSWER_SQL = `UPDATE idempotency_keys SET status_code = $4, response = $5
 WHERE caller_did = $1 AND method = $2 AND key = $3`;

const STORED_SQL = `SELECT request_hash, status_code, response, expires_at <= $4 AS expired
  FROM idempotency_keys WHERE caller_did = $1 AND method = $2 AND key = $3`;

/** An expired entry is taken over by the next request as if it were absent; the lock_timeout goes back to `$7`. */
const TAKE_OVER_SQL = `UPDATE idempotency_keys
   SET request_hash = $4, status_code = NULL, response = NULL, created_at = $5, expires_at = $6
 WHERE caller_did = $1 AND method = $2 AND key = $3 AND expires_at <= $5
RETURNING set_config('lock_timeout', $7, true)`;

/** One request's claim on (caller, method, key): what both the general path and a batch of sends need. */
export interface KeyClaim {
  scope: Scope;
  /** The request's fingerprint: a repeat with another body gets 422. */
  requestHash: string;
  now: Date;
  expiresAt: Date;
  /** The longest wait for a concurrent request holding the same key; then 409. */
  waitMs: number;
}

/** A write that claimed its key itself (a batch of sends): its own answer, the committed one (a repeat), or undefined (take the general path). */
export type OnceOutcome = { sent: string } | { stored: StoredAnswer } | undefined;

/**
 * Claims the key for this transaction (undefined) or returns the answer already committed for it.
 * Waits up to `waitMs` while another transaction holds the key, then answers 409. Whichever way the
 * key is claimed (inserted or taken over), the transaction's lock_timeout is back to what it was.
 */
export function claimKey(tx: Queryable, claim: KeyClaim): Promise<StoredAnswer | undefined> {
  return claimOrTakeOver(tx, claim, null);
}

async function claimOrTakeOver(
  tx: Queryable,
  claim: KeyClaim,
  before: string | null,
): Promise<StoredAnswer | undefined> {
  const { scope, requestHash, now, expiresAt, waitMs } = claim;
  try {
    const [inserted] = await tx.query<{ before: string; claimed: boolean }>(CLAIM_KEY_SQL, [
      ...scope,
      requestHash,
      now,
      expiresAt,
      `${waitMs}ms`,
      before,
    ]);
    if (inserted!.claimed) return undefined;
    const [stored] = await tx.query<{ request_hash: string; status_code: number; response: string; expired: boolean }>(
      STORED_SQL,
      [...scope, now],
    );
    if (!stored) throw keyInUse(waitMs);
    if (stored.expired) {
      const [taken] = await tx.query(TAKE_OVER_SQL, [...scope, requestHash, now, expiresAt, inserted!.before]);
      if (taken) return undefined;
      return claimOrTakeOver(tx, claim, inserted!.before);
    }
    return { requestHash: stored.request_hash, statusCode: stored.status_code, response: stored.response };
  } catch (error) {
    if (isLockTimeout(error)) throw keyInUse(waitMs);
    throw error;
  }
}

/** Thrown to roll back a claim that found nothing committed. */
class NothingCommitted extends Error {}

/**
 * The answer committed for the key, waiting (like a repeat, at most `waitMs`) for a transaction
 * that holds it; undefined, with nothing written, when no answer was committed.
 */
export async function committedAnswer(db: Queryable, claim: KeyClaim): Promise<StoredAnswer | undefined> {
  try {
    return await db.transaction(async (tx) => {
      const stored = await claimKey(tx, claim);
      if (!stored) throw new NothingCommitted();
      return stored;
    });
  } catch (error) {
    if (error instanceof NothingCommitted) return undefined;
    throw error;
  }
}

/**
 * Stores the handler's answer. The caller need not wait: started on a transaction handle, it is
 * sent together with COMMIT, and the transaction fails if it fails.
 */
export function storeAnswer(tx: Queryable, scope: Scope, statusCode: number, response: string): Promise<unknown> {
  return tx.query(STORE_ANSWER_SQL, [...scope, statusCode, response]);
}

function keyInUse(waitMs: number): XrpcError {
  return new XrpcError(409, "IdempotencyKeyInUse", "a request with this idempotency key is still running", {
    "Retry-After": String(Math.max(1, Math.ceil(waitMs / 1000))),
  });
}
