/**
 * A migration that needs a lock a long reader holds: it gives up each attempt after its lock timeout
 * (so traffic queued behind it moves on), retries, and applies once the reader is gone. An attempt a deadlock
 * rolled back is retried the same way.
 */
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { Database } from "../../src/db/driver.js";
import { migrate, type Migration } from "../../src/db/migrate.js";
import { createPostgresDatabase } from "../../src/db/postgres.js";
import { unique } from "../helpers/context.js";

const admin = postgres(inject("adminUrl"), { max: 1, onnotice: () => {} });
const name = unique("mls_migrate_lock_");
let url: string;
let db: Database;
let reader: postgres.Sql;
let other: postgres.Sql;

beforeAll(async () => {
  await admin.unsafe(`CREATE DATABASE ${name}`);
  const target = new URL(inject("adminUrl"));
  target.pathname = `/${name}`;
  url = target.toString();
  db = createPostgresDatabase(url, { max: 2 });
  reader = postgres(url, { max: 1, onnotice: () => {} });
  other = postgres(url, { max: 1, onnotice: () => {} });
  await db.exec(
    "CREATE TABLE busy (id int PRIMARY KEY); INSERT INTO busy VALUES (1), (2); CREATE TABLE busy2 (id int PRIMARY KEY);",
  );
});

afterAll(async () => {
  await Promise.all([db?.close(), reader?.end(), other?.end()]);
  await admin.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await admin.end();
});

const addColumn = (file: string, column: string): Migration => ({
  name: file,
  sql: `ALTER TABLE busy ADD COLUMN ${column} int NOT NULL DEFAULT 0;`,
});

/** Holds ACCESS SHARE on `busy` in an open transaction (a long read) until `release` is called. */
async function holdReadLock(): Promise<{ release: () => void; done: Promise<unknown> }> {
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  let locked!: () => void;
  const isLocked = new Promise<void>((resolve) => (locked = resolve));
  const done = reader.begin(async (tx) => {
    await tx`SELECT count(*) FROM busy`;
    locked();
    await released;
  });
  await isLocked;
  return { release, done };
}

describe("migrate behind a long reader", () => {
  it("gives up each attempt after its lock timeout, lets other queries through, and applies once the lock is gone", async () => {
    const lock = await holdReadLock();
    const retries: number[] = [];
    let sawRetry!: () => void;
    const retried = new Promise<void>((resolve) => (sawRetry = resolve));
    const migrating = migrate(db, [addColumn("0100_busy_a.sql", "a")], {
      lockTimeoutMs: 100,
      attempts: 1000,
      onRetry: (attempt) => {
        retries.push(attempt);
        if (attempt === 2) sawRetry();
      },
    });
    await retried;
    // Between attempts nothing is queued behind the migration: a write to the table goes through.
    // (Without the lock timeout it would wait behind the migration's queued ACCESS EXCLUSIVE.)
    await other`INSERT INTO busy VALUES (3)`;
    lock.release();
    await lock.done;
    expect(await migrating).toEqual(["0100_busy_a.sql"]);
    expect(retries.length).toBeGreaterThanOrEqual(2);
    const columns =
      await other`SELECT column_name FROM information_schema.columns WHERE table_name = 'busy' ORDER BY column_name`;
    expect(columns.map((row) => row.column_name)).toEqual(["a", "id"]);
    expect((await other`SELECT count(*)::int AS n FROM busy`)[0]!.n).toBe(3);
  });

  it("fails after its last attempt without recording the migration", async () => {
    const lock = await holdReadLock();
    try {
      await expect(
        migrate(db, [addColumn("0101_busy_b.sql", "b")], { lockTimeoutMs: 50, attempts: 2 }),
      ).rejects.toMatchObject({
        code: "55P03",
      });
    } finally {
      lock.release();
      await lock.done;
    }
    const recorded = await other`SELECT name FROM schema_migrations WHERE name = '0101_busy_b.sql'`;
    expect(recorded).toHaveLength(0);
  });

  it("retries an attempt a deadlock rolled back: a live transaction took two of its tables in the other order", async () => {
    let inserted!: () => void;
    const holdsBusy2 = new Promise<void>((resolve) => (inserted = resolve));
    let proceed!: () => void;
    const migrationWaits = new Promise<void>((resolve) => (proceed = resolve));
    const live = reader.begin(async (tx) => {
      // The migration, which waits first, finds the deadlock (and rolls back) before this transaction looks.
      await tx`SET LOCAL deadlock_timeout = '10s'`;
      await tx`INSERT INTO busy2 VALUES (1)`;
      inserted();
      await migrationWaits;
      await tx`INSERT INTO busy VALUES (10)`;
    });
    await holdsBusy2;
    const retried: unknown[] = [];
    const migrating = migrate(
      db,
      [
        {
          name: "0102_busy_both.sql",
          sql: "ALTER TABLE busy ADD COLUMN c int; ALTER TABLE busy2 ADD COLUMN c int;",
        },
      ],
      { lockTimeoutMs: 5000, attempts: 3, onRetry: (_, error) => retried.push((error as { code?: string }).code) },
    );
    // Once the migration holds busy and waits for busy2, the live transaction writes busy: a cycle.
    for (;;) {
      const waiting = await other`SELECT 1 FROM pg_locks WHERE relation = 'busy2'::regclass AND NOT granted`;
      if (waiting.length > 0) break;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    proceed();
    await live;
    expect(await migrating).toEqual(["0102_busy_both.sql"]);
    expect(retried).toEqual(["40P01"]);
    expect((await other`SELECT count(*)::int AS n FROM busy WHERE id = 10`)[0]!.n).toBe(1);
  });
});
