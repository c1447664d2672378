import postgres from "postgres";
import { inject } from "vitest";
import type { Database } from "../../src/db/driver.js";
import { migrate, type Migration } from "../../src/db/migrate.js";
import { readMigrations } from "../../src/db/migrations-fs.js";
import { createPostgresDatabase } from "../../src/db/postgres.js";
import { unique } from "./context.js";

export interface SchemaBefore {
  /** A database of its own, with every migration named before `migration` applied. */
  db: Database;
  /** Applies `migration` (and nothing after it); resolves to the names it applied. */
  upgrade(): Promise<string[]>;
  /** Closes the connections and drops the database. */
  drop(): Promise<void>;
}

/**
 * The schema a live server had before `migration`, on a database of its own on the test server: a
 * test populates it, upgrades in place, and checks the data kept. Throws when `migration` is no file
 * of db/migrations.
 *
 * @example
 * const before = await schemaBefore("0005_member_history.sql");
 * await before.db.exec("INSERT INTO ...");
 * expect(await before.upgrade()).toEqual(["0005_member_history.sql"]);
 */
export async function schemaBefore(migration: string): Promise<SchemaBefore> {
  const all = await readMigrations();
  if (!all.some((m) => m.name === migration)) throw new Error(`no migration ${migration} in db/migrations`);
  const { db, drop } = await databaseOfItsOwn(
    "mls_upgrade_",
    all.filter((m) => m.name < migration),
  );
  return {
    db,
    upgrade: () =>
      migrate(
        db,
        all.filter((m) => m.name <= migration),
      ),
    drop,
  };
}

/**
 * A migrated database of its own on the test server, dropped when it is closed: for a test that runs cleanup with
 * a clock ahead, which on the shared database would expire other test files' rows (their in-flight welcomes).
 */
export async function ownDatabase(): Promise<Database> {
  const { db, drop } = await databaseOfItsOwn("mls_own_", await readMigrations());
  return { ...db, close: drop };
}

async function databaseOfItsOwn(prefix: string, migrations: Migration[]) {
  const admin = postgres(inject("adminUrl"), { max: 1, onnotice: () => {} });
  const name = unique(prefix);
  await admin.unsafe(`CREATE DATABASE ${name}`);
  const url = new URL(inject("adminUrl"));
  url.pathname = `/${name}`;
  const db = createPostgresDatabase(url.toString(), { max: 10 });
  await migrate(db, migrations);
  return {
    db,
    drop: async () => {
      await db.close();
      await admin.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await admin.end();
    },
  };
}
