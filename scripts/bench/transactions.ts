import type { Sql } from "postgres";

/**
 * Transactions committed or rolled back in database `name` so far, read once no session of it is left.
 * A backend adds its counts to pg_stat_database at most once a second, at the end of a transaction, and
 * (PostgreSQL 15.20 here) an idle backend kept its last second's counts for over a minute, until its next
 * transaction or its exit; pg_stat_force_next_flush() flushes only the calling session. So a window is
 * counted from one quiet database to the next: every session that ran in between has exited.
 * `admin` must be connected to another database, so reading the counts adds nothing to them.
 */
export async function settledTransactions(admin: Sql, name: string): Promise<number> {
  for (let attempt = 0; ; attempt++) {
    const [{ sessions }] = await admin<[{ sessions: number }]>`
      SELECT count(*)::int AS sessions FROM pg_stat_activity WHERE datname = ${name}`;
    if (sessions === 0) break;
    if (attempt > 100) throw new Error(`database ${name} still has ${sessions} sessions`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  // A session leaves pg_stat_activity a moment before its exit adds its counts.
  let last = -1;
  for (;;) {
    const [{ transactions }] = await admin<[{ transactions: string }]>`
      SELECT xact_commit + xact_rollback AS transactions FROM pg_stat_database WHERE datname = ${name}`;
    if (Number(transactions) === last) return last;
    last = Number(transactions);
    await new Promise((resolve) => setTimeout(resolve, 300));
  }
}
