import type { Database, Queryable } from "../db/driver.js";
import { expireWelcomes } from "../services/welcomes.js";

export interface CleanupOptions {
  now: Date;
  welcomeGraceSeconds: number;
  retentionDays: number;
  /** Rows per statement, so one run never holds huge locks. */
  batchSize?: number;
}

export interface CleanupCounts {
  idempotencyKeys: number;
  keyPackages: number;
  welcomesExpired: number;
  welcomesDeleted: number;
  messages: number;
  events: number;
  seenTokens: number;
}

export type CleanupResult = ({ ran: true } & CleanupCounts) | { ran: false; reason: "another cleanup is running" };

const CLEANUP_LOCK_KEY = 7_146_021_902;
const DAY_MS = 86_400_000;

/**
 * The one cleanup run, shared by cron triggers, the Node/Deno timer and `npm run cleanup`.
 * Removes only what is past its time; an advisory lock keeps two runners from overlapping.
 */
export async function runCleanup(db: Database, options: CleanupOptions): Promise<CleanupResult> {
  const { now, batchSize = 1000 } = options;
  const retentionCutoff = new Date(now.getTime() - options.retentionDays * DAY_MS);
  const graceCutoff = new Date(now.getTime() - options.welcomeGraceSeconds * 1000);
  return db.maintenance(async (tx): Promise<CleanupResult> => {
    const [lock] = await tx.query<{ locked: boolean }>("SELECT pg_try_advisory_xact_lock($1) AS locked", [
      CLEANUP_LOCK_KEY,
    ]);
    if (!lock?.locked) return { ran: false, reason: "another cleanup is running" };
    const deleteBatched = (table: string, where: string, cutoff: Date) => deleteInBatches(tx, table, where, cutoff, batchSize);
    return {
      ran: true,
      idempotencyKeys: await deleteBatched("idempotency_keys", "expires_at <= $1", now),
      keyPackages: await deleteBatched("key_packages", "expires_at <= $1", now),
      welcomesExpired: await expireWelcomes(tx, graceCutoff, now),
      welcomesDeleted: await deleteBatched(
        "welcome_messages",
        "state IN ('consumed', 'expired') AND coalesce(confirmed_at, fetched_at, created_at) <= $1",
        retentionCutoff,
      ),
      messages: await deleteBatched("messages", "created_at <= $1", retentionCutoff),
      events: await deleteBatched("events", "created_at <= $1", retentionCutoff),
      seenTokens: await deleteBatched("seen_tokens", "expires_at <= $1", now),
    };
  });
}

async function deleteInBatches(tx: Queryable, table: string, where: string, cutoff: Date, batchSize: number) {
  let total = 0;
  for (;;) {
    const [row] = await tx.query<{ deleted: number }>(
      `WITH gone AS (
         DELETE FROM ${table} WHERE ctid IN (SELECT ctid FROM ${table} WHERE ${where} LIMIT $2) RETURNING 1
       ) SELECT count(*) AS deleted FROM gone`,
      [cutoff, batchSize],
    );
    const deleted = row?.deleted ?? 0;
    total += deleted;
    if (deleted < batchSize) return total;
  }
}
