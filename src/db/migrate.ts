import { sha256Hex } from "../bytes.js";
import { isLockTimeout, isTransactionConflict, type Database } from "./driver.js";

export interface Migration {
  /** File name, e.g. `0001_schema.sql`; applied in name order. */
  name: string;
  sql: string;
}

export class MigrationChecksumError extends Error {
  override name = "MigrationChecksumError";
}

/** Any constant works; it only has to be the same for every runner. */
const MIGRATION_LOCK_KEY = 7_146_021_901;

export interface MigrateOptions {
  /**
   * How long one attempt may wait for each table lock. A migration waiting for a lock queues every later
   * statement on that table (and on the tables it already locked) behind it, so live traffic stalls at most this
   * long per lock the attempt waits for.
   */
  lockTimeoutMs?: number;
  /** Attempts before giving up; between them the lock holders finish and traffic flows. */
  attempts?: number;
  /** Called before each retry (for the log). */
  onRetry?: (attempt: number, error: unknown) => void;
}

/**
 * Applies the migrations not yet recorded, in order, in one transaction under an advisory lock,
 * so two processes starting at once apply each file exactly once. Refuses to run when a file
 * that was already applied has changed since. Returns the names it applied.
 *
 * Statements run under `lock_timeout`: an attempt that cannot get a table lock in time, or that a deadlock
 * rolls back, is retried after a pause, instead of holding up every query behind its queued lock.
 */
export async function migrate(
  db: Database,
  migrations: readonly Migration[],
  { lockTimeoutMs = 1000, attempts = 30, onRetry }: MigrateOptions = {},
): Promise<string[]> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await migrateOnce(db, migrations, lockTimeoutMs);
    } catch (error) {
      // A deadlock's victim rolled back like a timed-out attempt: a migration that locks several tables can meet a
      // live transaction taking two of them in the other order.
      if (!(isLockTimeout(error) || isTransactionConflict(error)) || attempt >= attempts) throw error;
      onRetry?.(attempt, error);
      await new Promise((resolve) => setTimeout(resolve, Math.min(250 * attempt, 5000)));
    }
  }
}

async function migrateOnce(db: Database, migrations: readonly Migration[], lockTimeoutMs: number): Promise<string[]> {
  const ordered = [...migrations].sort((a, b) => a.name.localeCompare(b.name));
  const checksums = ordered.map((migration) => sha256Hex(migration.sql));
  return db.maintenance(async (tx) => {
    // Waiting here for another runner holds no table lock, so it needs no timeout.
    await tx.query("SELECT pg_advisory_xact_lock($1)", [MIGRATION_LOCK_KEY]);
    await tx.query("SELECT set_config('lock_timeout', $1, true)", [`${lockTimeoutMs}ms`]);
    await tx.exec(
      `CREATE TABLE IF NOT EXISTS schema_migrations (
         name text PRIMARY KEY,
         checksum text NOT NULL,
         applied_at timestamptz NOT NULL DEFAULT now()
       )`,
    );
    const rows = await tx.query<{ name: string; checksum: string }>("SELECT name, checksum FROM schema_migrations");
    const applied = new Map(rows.map((row) => [row.name, row.checksum]));
    const done: string[] = [];
    for (const [index, migration] of ordered.entries()) {
      const checksum = checksums[index]!;
      const recorded = applied.get(migration.name);
      if (recorded !== undefined) {
        if (recorded !== checksum) {
          throw new MigrationChecksumError(`migration ${migration.name} was edited after it was applied`);
        }
        continue;
      }
      await tx.exec(migration.sql);
      await tx.query("INSERT INTO schema_migrations (name, checksum) VALUES ($1, $2)", [migration.name, checksum]);
      done.push(migration.name);
    }
    return done;
  });
}
