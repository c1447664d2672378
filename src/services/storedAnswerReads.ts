import type { Queryable } from "../db/driver.js";
import type { Logger } from "../logger.js";
import type { Scope, StoredAnswer } from "./idempotencyKeys.js";

/**
 * Each item's committed record of (caller, method, key) that expires at `x` exactly (one record of a key, not a
 * later one), found by index through a LATERAL lookup per item; `n` is the item's position. Items with no such
 * record (not committed, taken over, removed) return no row.
 */
export const STORED_ANSWERS_SQL = `SELECT r.n, k.request_hash, k.status_code, k.response
  FROM jsonb_to_recordset($1::text::jsonb) AS r(n int, s text, m text, k text, x timestamptz)
  CROSS JOIN LATERAL (
    SELECT k.request_hash, k.status_code, k.response FROM idempotency_keys k
     WHERE k.caller_did = r.s AND k.method = r.m AND k.key = r.k AND k.expires_at = r.x AND k.response IS NOT NULL
  ) k`;

export interface StoredAnswerReadsOptions {
  /** The pool the reads run on (not a request's transaction). */
  db: Queryable;
  /** Warned of each failed statement: its reads took the general path, which answers them all the same. */
  logger: Logger;
  /** Told of each failed statement (a metric). */
  observeFailure(): void;
}

interface Pending {
  scope: Scope;
  expiresAt: Date;
  deadlinePassed(): boolean;
  settle(answer: StoredAnswer | undefined): void;
}

/** The most reads one statement makes. */
const MAX_ITEMS = 256;

/**
 * Reads of committed idempotency records (the repeats `KnownRequests` recognises), many to a statement: a read
 * arriving while none is in flight starts one at once, and reads arriving meanwhile form the next, up to
 * `MAX_ITEMS`. One statement per batch instead of one per repeat: each statement cost the server a socket write
 * and a read of its own. Reads only, on the pool, outside any transaction.
 *
 * @example
 * const reads = new StoredAnswerReads({ db, logger, observeFailure: () => metrics.storedAnswerReadFailed() });
 * const stored = await reads.read([caller, method, key], expiresAt, deadlinePassed); // undefined: none (or too late)
 */
export class StoredAnswerReads {
  private queue: Pending[] = [];
  private reading = false;

  constructor(private readonly options: StoredAnswerReadsOptions) {}

  /**
   * The answer of the key's record that expires at `expiresAt`; undefined when there is none, when the request's
   * deadline passed before its read could start (nothing read then), or when the statement failed (with others'
   * reads in it): the caller's general path answers then. Never rejects.
   */
  read(scope: Scope, expiresAt: Date, deadlinePassed: () => boolean): Promise<StoredAnswer | undefined> {
    return new Promise((settle) => {
      this.queue.push({ scope, expiresAt, deadlinePassed, settle });
      if (this.reading) return;
      this.reading = true;
      // Not a timer: reads made in this turn of the event loop join the first statement, and none waits.
      queueMicrotask(() => void this.drain());
    });
  }

  private async drain(): Promise<void> {
    try {
      await this.readAll();
    } finally {
      // Whatever happened, the next read starts a drain of its own rather than wait for this one.
      this.reading = false;
    }
  }

  private async readAll(): Promise<void> {
    const { db, logger, observeFailure } = this.options;
    while (this.dropLate() > 0) {
      const batch = this.queue.splice(0, MAX_ITEMS);
      try {
        const items = batch.map(({ scope: [s, m, k], expiresAt }, n) => ({ n, s, m, k, x: expiresAt.toISOString() }));
        const rows = await db.query<{ n: number; request_hash: string; status_code: number; response: string }>(
          STORED_ANSWERS_SQL,
          [JSON.stringify(items)],
        );
        const found = new Map(rows.map((row) => [row.n, row]));
        batch.forEach((item, n) => {
          const row = found.get(n);
          item.settle(row && { requestHash: row.request_hash, statusCode: row.status_code, response: row.response });
        });
      } catch (error) {
        for (const item of batch) item.settle(undefined);
        logger.warn("reading known requests' records failed", { error: String(error), reads: batch.length });
        observeFailure();
      }
    }
  }

  /** Reads whose request's deadline passed while they waited start no statement. Returns how many are left. */
  private dropLate(): number {
    this.queue = this.queue.filter((item) => {
      if (!item.deadlinePassed()) return true;
      item.settle(undefined);
      return false;
    });
    return this.queue.length;
  }
}
