import type { Database, Queryable } from "../db/driver.js";
import { keyUnkeyedKeyPackages, SIGNATURE_KEY_BATCH } from "../services/keyPackageSignatureKeys.js";
import { deleteUnusedWelcomePayloads, expireStaleWelcomes } from "../services/welcomes.js";

export interface CleanupOptions {
  now: Date;
  welcomeGraceSeconds: number;
  /** An `available` welcome not fetched within this long expires. */
  welcomeTtlSeconds: number;
  retentionDays: number;
  /** REJOIN_COOLDOWN_SECONDS: an external join is kept while it may still time a device's cooldown. */
  rejoinCooldownSeconds?: number;
  /** Rows per statement; each statement is its own short transaction. */
  batchSize?: number;
  /** How long the run's lease lasts without renewal (it is renewed after every batch). */
  leaseSeconds?: number;
}

export interface CleanupCounts {
  idempotencyKeys: number;
  keyPackages: number;
  /** Packages stored before migration 0012 given their signature key (or deleted when their signatures fail). */
  keyPackageKeys: number;
  externalJoins: number;
  welcomesExpired: number;
  welcomesDeleted: number;
  welcomePayloads: number;
  messages: number;
  events: number;
  seenTokens: number;
}

export type CleanupResult = ({ ran: true } & CleanupCounts) | { ran: false; reason: "another cleanup is running" };

const LEASE = "cleanup";
const DAY_MS = 86_400_000;

/**
 * The one cleanup run, shared by cron triggers, the Node/Deno timer and `npm run cleanup`.
 * Removes only what is past its time, a batch per transaction, so no lock a live request waits
 * on is held for more than one batch and a late failure keeps the batches before it. A lease row
 * keeps two runners from overlapping (it works through any pooler, unlike a session lock).
 */
export async function runCleanup(db: Database, options: CleanupOptions): Promise<CleanupResult> {
  const { now, batchSize = 1000, leaseSeconds = 300 } = options;
  const retentionCutoff = new Date(now.getTime() - options.retentionDays * DAY_MS);
  const joinsCutoff = new Date(
    Math.min(retentionCutoff.getTime(), now.getTime() - (options.rejoinCooldownSeconds ?? 0) * 1000),
  );
  const holder = crypto.randomUUID();
  if (!(await takeLease(db, holder, leaseSeconds))) return { ran: false, reason: "another cleanup is running" };
  try {
    const batched = async (batch: () => Promise<number>, size = batchSize) => {
      let total = 0;
      for (;;) {
        const done = await batch();
        total += done;
        await renewLease(db, holder, leaseSeconds);
        if (done < size) return total;
      }
    };
    const deleted = (table: string, where: string, cutoff: Date, order?: string) =>
      batched(() => deleteBatch(db, table, where, cutoff, batchSize, order));
    const times = { now, graceSeconds: options.welcomeGraceSeconds, ttlSeconds: options.welcomeTtlSeconds };
    return {
      ran: true,
      idempotencyKeys: await deleted("idempotency_keys", "expires_at <= $1", now),
      keyPackages: await deleted("key_packages", "expires_at <= $1", now),
      keyPackageKeys: await keyOldKeyPackages(db, Math.min(batchSize, SIGNATURE_KEY_BATCH), batched),
      // The last external join of each (conversation, device) only times its cooldown.
      externalJoins: await deleted("external_joins", "joined_at <= $1", joinsCutoff),
      welcomesExpired: await batched(() => expireStaleWelcomes(db, times, batchSize)),
      // The expression of the index welcome_messages_retired_at.
      welcomesDeleted: await deleted(
        "welcome_messages",
        "state IN ('consumed', 'expired') AND coalesce(confirmed_at, fetched_at, created_at) <= $1",
        retentionCutoff,
      ),
      // After the rows: a payload goes once no row references it and it is unused since the same cutoff.
      welcomePayloads: await batched(() => deleteUnusedWelcomePayloads(db, retentionCutoff, batchSize)),
      // Events before messages, each oldest first (createdAt grows with seq): at every batch boundary
      // what is gone is a prefix of each conversation, and no event outlives its message, so a
      // reader's cursor into the removed part is CursorExpired, never a silent skip over a gap.
      events: await deleted("events", "created_at <= $1", retentionCutoff, "created_at, convo_id, seq"),
      messages: await deleted("messages", "created_at <= $1", retentionCutoff, "created_at, convo_id, seq"),
      seenTokens: await deleted("seen_tokens", "expires_at <= $1", now),
    };
  } finally {
    await db.query(`DELETE FROM job_leases WHERE name = $1 AND holder = $2`, [LEASE, holder]);
  }
}

/** Keys (or deletes) the packages stored before 0012, oldest first, a batch at a time; returns how many it settled. */
async function keyOldKeyPackages(
  db: Queryable,
  size: number,
  batched: (batch: () => Promise<number>, size: number) => Promise<number>,
): Promise<number> {
  let afterId = "0";
  let settled = 0;
  await batched(async () => {
    const batch = await keyUnkeyedKeyPackages(db, afterId, size);
    afterId = batch.lastId;
    settled += batch.settled;
    return batch.read;
  }, size);
  return settled;
}

async function deleteBatch(
  db: Queryable,
  table: string,
  where: string,
  cutoff: Date,
  batchSize: number,
  order?: string,
) {
  const [row] = await db.query<{ deleted: number }>(
    `WITH gone AS (
       DELETE FROM ${table} WHERE ctid IN (
         SELECT ctid FROM ${table} WHERE ${where} ${order ? `ORDER BY ${order}` : ""} LIMIT $2
       ) RETURNING 1
     ) SELECT count(*) AS deleted FROM gone`,
    [cutoff, batchSize],
  );
  return Number(row?.deleted ?? 0);
}

/** Takes the lease when nobody holds it or the holder's has lapsed (by the database's clock). */
async function takeLease(db: Queryable, holder: string, seconds: number): Promise<boolean> {
  const rows = await db.query(
    `INSERT INTO job_leases (name, holder, expires_at) VALUES ($1, $2, clock_timestamp() + make_interval(secs => $3))
     ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
      WHERE job_leases.expires_at <= clock_timestamp()
     RETURNING 1`,
    [LEASE, holder, seconds],
  );
  return rows.length === 1;
}

async function renewLease(db: Queryable, holder: string, seconds: number): Promise<void> {
  const rows = await db.query(
    `UPDATE job_leases SET expires_at = clock_timestamp() + make_interval(secs => $3)
      WHERE name = $1 AND holder = $2 RETURNING 1`,
    [LEASE, holder, seconds],
  );
  // Only after a stall longer than the lease: another runner has taken over, so this one stops.
  if (rows.length === 0) throw new Error("cleanup lease lost to another runner");
}
