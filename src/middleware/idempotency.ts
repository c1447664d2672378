import type { Context, MiddlewareHandler } from "hono";
import { sha256Hex } from "../bytes.js";
import { DatabaseError, type Queryable } from "../db/driver.js";
import { invalidRequest, XrpcError } from "../errors.js";
import { idempotencyKey as keySchema } from "../schemas.js";
import { jsonBody } from "../xrpc.js";
import { canonicalJson } from "./canonicalJson.js";

export interface IdempotencyOptions {
  /** How long a stored response is replayed. */
  ttlSeconds: number;
  /** How long a repeat waits for the first request before answering 409 IdempotencyKeyInUse. */
  waitMs: number;
}

interface StoredEntry {
  request_hash: string;
  status_code: number;
  response: string;
  expired: boolean;
}

/** Thrown inside the transaction to roll back a 5xx answer: it must not be stored. */
class DoNotStore extends Error {}

const LOCK_NOT_AVAILABLE = "55P03";

/**
 * Exactly-once procedures. The first request with a key claims (caller, method, key) by inserting
 * its row, runs the handler inside the same transaction and stores the answer there too, so the
 * writes and the stored answer commit together or not at all. A concurrent repeat's insert waits
 * on the uncommitted row (the database is the lock, shared by every instance) and then replays the
 * committed answer; after `waitMs` it gets 409. 5xx answers roll back and are not stored.
 *
 * @example
 * app.post("/xrpc/blue.catbird.mls.sendMessage", auth(...), idempotency({ ttlSeconds: 86400, waitMs: 10000 }), handler)
 */
export function idempotency({ ttlSeconds, waitMs }: IdempotencyOptions): MiddlewareHandler {
  return async function idempotency(c, next) {
    const key = await requestKey(c);
    c.set("idempotencyKey", key?.key);
    if (!key) return next();

    const { db, clock } = c.get("app");
    const scope = [c.get("caller"), c.req.path.slice("/xrpc/".length), key.key] as const;
    const now = clock.now();
    let replay: Response | undefined;
    try {
      await db.transaction(async (tx) => {
        const stored = await claim(tx, scope, key.hash, now, ttlSeconds, waitMs);
        if (stored) {
          if (stored.request_hash !== key.hash) {
            throw new XrpcError(422, "IdempotencyKeyReused", "this idempotency key was used with a different request");
          }
          replay = new Response(stored.response, {
            status: stored.status_code,
            headers: { "Content-Type": "application/json", "Idempotent-Replayed": "true" },
          });
          return;
        }
        c.set("db", tx);
        await next();
        if (c.res.status >= 500) throw new DoNotStore();
        await tx.query(
          `UPDATE idempotency_keys SET status_code = $4, response = $5
            WHERE caller_did = $1 AND method = $2 AND key = $3`,
          [...scope, c.res.status, await c.res.clone().text()],
        );
      });
    } catch (error) {
      if (error instanceof DoNotStore) return;
      throw error;
    }
    if (replay) {
      c.get("app").metrics.idempotencyReplay(scope[1]);
      c.res = replay;
    }
  };
}

/**
 * Claims the key for this transaction, or returns the committed entry it already has. The insert
 * waits (up to `waitMs`, as the transaction's lock_timeout) while another transaction holds the key.
 * An expired entry is taken over as if it were absent.
 */
async function claim(
  tx: Queryable,
  scope: readonly [string, string, string],
  hash: string,
  now: Date,
  ttlSeconds: number,
  waitMs: number,
): Promise<StoredEntry | undefined> {
  const expiresAt = new Date(now.getTime() + ttlSeconds * 1000);
  try {
    // set_config runs before the row is inserted, so the wait on a held key is bounded.
    const inserted = await tx.query(
      `WITH wait AS (SELECT set_config('lock_timeout', $7, true))
       INSERT INTO idempotency_keys (caller_did, method, key, request_hash, created_at, expires_at)
       SELECT $1, $2, $3, $4, $5, $6 FROM wait
       ON CONFLICT (caller_did, method, key) DO UPDATE
          SET request_hash = excluded.request_hash, status_code = NULL, response = NULL,
              created_at = excluded.created_at, expires_at = excluded.expires_at
        WHERE idempotency_keys.expires_at <= excluded.created_at
       RETURNING 1`,
      [...scope, hash, now, expiresAt, `${waitMs}ms`],
    );
    if (inserted.length) return undefined;
  } catch (error) {
    if (error instanceof DatabaseError && error.code === LOCK_NOT_AVAILABLE) throw keyInUse(waitMs);
    throw error;
  }
  const [stored] = await tx.query<StoredEntry>(
    `SELECT request_hash, status_code, response FROM idempotency_keys
      WHERE caller_did = $1 AND method = $2 AND key = $3`,
    scope,
  );
  if (!stored) throw keyInUse(waitMs);
  return stored;
}

function keyInUse(waitMs: number): XrpcError {
  return new XrpcError(409, "IdempotencyKeyInUse", "a request with this idempotency key is still running", {
    "Retry-After": String(Math.max(1, Math.ceil(waitMs / 1000))),
  });
}

/** The key from the header or the body (both present and different: 400), and the body's fingerprint. */
async function requestKey(c: Context): Promise<{ key: string; hash: string } | undefined> {
  const body = await jsonBody(c);
  const { idempotencyKey: bodyKey, ...rest } =
    body !== null && typeof body === "object" && !Array.isArray(body) ? (body as Record<string, unknown>) : {};
  const headerKey = c.req.header("Idempotency-Key");
  if (headerKey !== undefined && bodyKey !== undefined && headerKey !== bodyKey) {
    throw invalidRequest("Idempotency-Key header and idempotencyKey field differ");
  }
  const key = headerKey ?? bodyKey;
  if (key === undefined) return undefined;
  const parsed = keySchema.safeParse(key);
  if (!parsed.success) throw invalidRequest("idempotency key must be 1 to 255 printable ASCII characters");
  const fingerprinted = Array.isArray(body) || body === null || typeof body !== "object" ? body : rest;
  return { key: parsed.data, hash: await sha256Hex(canonicalJson(fingerprinted)) };
}
