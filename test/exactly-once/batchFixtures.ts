/** Sends, claims and a coalescer for tests that drive group commit directly (SendCoalescer, no HTTP). */
import type { Database, Queryable } from "../../src/db/driver.js";
import { IMPLICIT_DEVICE } from "../../src/services/actingDevice.js";
import type { KeyClaim, OnceOutcome } from "../../src/services/idempotencyKeys.js";
import type { SendMessage } from "../../src/services/messages.js";
import { SendCoalescer } from "../../src/services/sendCoalescer.js";
import { holdRowLock } from "../helpers/rowLock.js";
import { within } from "../helpers/within.js";

export const METHOD = "blue.catbird.mls.sendMessage";

/** A send of a fresh ciphertext from `sender`'s implicit device at epoch 0; `extra` overrides any field. */
export const message = (convoId: string, sender: string, extra: Partial<SendMessage> = {}): SendMessage => ({
  convoId,
  sender,
  senderDevice: IMPLICIT_DEVICE,
  epoch: 0,
  ciphertext: new TextEncoder().encode(`${sender} ${crypto.randomUUID()}`),
  messageType: "app",
  opaque: true,
  now: new Date(),
  ...extra,
});

/** `caller`'s claim of `key` for sendMessage, alive for a day. */
export const claimOf = (caller: string, key: string, requestHash = "a".repeat(64)): KeyClaim => ({
  scope: [caller, METHOD, key],
  requestHash,
  now: new Date(),
  expiresAt: new Date(Date.now() + 86_400_000),
  waitMs: 10_000,
});

/** A one-lane coalescer over `db`, recording how many sends each statement answered. */
export function coalescer(db: Queryable, maxItems = 128, maxBytes = 4 << 20, heldWaitMs = 250) {
  const sizes: number[] = [];
  const sends = new SendCoalescer({
    db,
    maxItems,
    maxBytes,
    heldWaitMs,
    lanes: 1,
    method: METHOD,
    observe: (n) => sizes.push(n),
    // No streams here: nothing to notify or wake.
    announcer: { notice: undefined, publishEvents: () => {} },
  });
  return { sends, sizes };
}

/** The seq a stored send's answer gives; undefined for any other outcome. */
export const seqOf = (outcome: OnceOutcome) =>
  outcome && "sent" in outcome ? (JSON.parse(outcome.sent) as { seq: number }).seq : undefined;

/**
 * `caller`'s committed-looking record of `key` (answer `{"seq":0}`), inserted by a transaction left open until
 * released, without the key's advisory lock: a batch's snapshot misses it, and its insert of the key waits for it.
 */
export const uncommittedKeyRecord = (db: Database, caller: string, key: string) =>
  holdRowLock(
    db,
    `INSERT INTO idempotency_keys (caller_did, method, key, request_hash, status_code, response, created_at, expires_at)
     VALUES ($1, $2, $3, $4, 200, '{"seq":0}', now(), now() + interval '1 day') RETURNING 1`,
    [caller, METHOD, key, "a".repeat(64)],
  );

/** Resolves once a statement starting with `sql` waits for a lock (pg_stat_activity); throws after about 10 s. */
export async function statementWaits(db: Queryable, sql: string): Promise<void> {
  for (let tries = 0; tries < 500; tries++) {
    const [row] = await db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND starts_with($1, query)`,
      [sql],
    );
    if (row!.n > 0) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error("the statement never waited for a lock");
}

/** `promise`'s value, or "pending" after 5 s. */
export const soon = <T>(promise: Promise<T>) => within(promise, 5_000);

/** Whether `promise` is still pending after everything already queued has run. */
export async function pending(promise: Promise<unknown>): Promise<boolean> {
  let settled = false;
  void promise.then(
    () => (settled = true),
    () => (settled = true),
  );
  await new Promise((resolve) => setImmediate(resolve));
  return !settled;
}
