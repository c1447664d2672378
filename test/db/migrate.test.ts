/**
 * The migration runner on fresh databases of its own: applies every file once, in order, atomically,
 * even with two runners starting together, and refuses files edited after they were applied.
 */
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { sha256Hex } from "../../src/bytes.js";
import type { Database } from "../../src/db/driver.js";
import { migrate, MigrationChecksumError, type Migration } from "../../src/db/migrate.js";
import { readMigrations } from "../../src/db/migrations-fs.js";
import { createPgliteDatabase } from "../../src/db/pglite.js";
import { createPostgresDatabase } from "../../src/db/postgres.js";
import { unique } from "../helpers/context.js";

const admin = postgres(inject("adminUrl"), { max: 1, onnotice: () => {} });
const created: string[] = [];
const opened: Database[] = [];
let migrations: Migration[];

beforeAll(async () => {
  migrations = await readMigrations();
});

afterAll(async () => {
  await Promise.all(opened.map((db) => db.close()));
  for (const name of created) await admin.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await admin.end();
});

/** A new empty database on the test server; returns a way to open postgres.js clients on it. */
async function freshDatabase(): Promise<() => Database> {
  const name = unique("mls_migrate_");
  await admin.unsafe(`CREATE DATABASE ${name}`);
  created.push(name);
  const url = new URL(inject("adminUrl"));
  url.pathname = `/${name}`;
  return () => {
    const db = createPostgresDatabase(url.toString(), { max: 2 });
    opened.push(db);
    return db;
  };
}

const recorded = (db: Database) =>
  db.query<{ name: string; checksum: string }>("SELECT name, checksum FROM schema_migrations ORDER BY name");

/** Fails when applied twice: a second CREATE TABLE of the same name is an error. */
const probe = (name: string): Migration => ({
  name,
  sql: "CREATE TABLE migration_probe (id int PRIMARY KEY);\nINSERT INTO migration_probe VALUES (1);",
});

describe("migrate on PostgreSQL", () => {
  it("applies every file of db/migrations to a fresh database, then does nothing on a re-run", async () => {
    const db = (await freshDatabase())();
    const names = migrations.map((migration) => migration.name);
    expect(names.length).toBeGreaterThan(0);

    expect(await migrate(db, migrations)).toEqual(names);
    const expected = await Promise.all(
      migrations.map(async (migration) => ({ name: migration.name, checksum: await sha256Hex(migration.sql) })),
    );
    expect(await recorded(db)).toEqual(expected);
    // The schema is really there.
    expect(await db.query("SELECT count(*) AS n FROM conversations")).toEqual([{ n: 0 }]);

    expect(await migrate(db, migrations)).toEqual([]);
    expect(await recorded(db)).toEqual(expected);
  });

  it("applies files in name order whatever order they are given in", async () => {
    const db = (await freshDatabase())();
    const later: Migration = { name: "9999_after_probe.sql", sql: "INSERT INTO migration_probe VALUES (2);" };
    const all = [later, probe("9998_probe.sql"), ...migrations];
    expect(await migrate(db, all)).toEqual([
      ...migrations.map((m) => m.name),
      "9998_probe.sql",
      "9999_after_probe.sql",
    ]);
    expect(await db.query("SELECT id FROM migration_probe ORDER BY id")).toEqual([{ id: 1 }, { id: 2 }]);
  });

  it("applies each file exactly once when two runners start together", async () => {
    const open = await freshDatabase();
    const [first, second] = [open(), open()];
    const all = [...migrations, probe("9999_probe.sql")];

    const [appliedByFirst, appliedBySecond] = await Promise.all([migrate(first, all), migrate(second, all)]);

    // One runner applied everything; the other waited for its lock and found nothing left.
    expect([appliedByFirst, appliedBySecond].sort((a, b) => a.length - b.length)).toEqual([
      [],
      all.map((migration) => migration.name),
    ]);
    expect((await recorded(first)).map((row) => row.name)).toEqual(all.map((migration) => migration.name));
    expect(await first.query("SELECT id FROM migration_probe")).toEqual([{ id: 1 }]);
  });

  it("refuses a file edited after it was applied, and applies nothing else in that run", async () => {
    const db = (await freshDatabase())();
    await migrate(db, migrations);
    const before = await recorded(db);
    const [firstFile, ...rest] = migrations;
    const edited = { ...firstFile!, sql: `${firstFile!.sql}\n-- edited after it was applied\n` };

    // The probe sorts before the edited file, so it runs first and must be rolled back with the run.
    const run = migrate(db, [probe("0000_probe.sql"), edited, ...rest]);
    await expect(run).rejects.toBeInstanceOf(MigrationChecksumError);
    await expect(run).rejects.toThrow(firstFile!.name);

    expect(await recorded(db)).toEqual(before);
    expect(await db.query("SELECT to_regclass('migration_probe') AS probe")).toEqual([{ probe: null }]);
  });
});

describe("migrate on PGlite", () => {
  let db: Database;
  // PGlite compiles its WASM at start: 2–4 s on an idle machine, tens of seconds on a loaded 2-core one.
  beforeAll(async () => {
    db = await createPgliteDatabase();
  }, 180_000);
  afterAll(() => db.close());

  it("applies the real migrations to an in-memory database, then does nothing on a re-run", async () => {
    expect(await migrate(db, migrations)).toEqual(migrations.map((migration) => migration.name));
    expect(await db.query("SELECT count(*) AS n FROM conversations")).toEqual([{ n: 0 }]);
    expect(await migrate(db, migrations)).toEqual([]);
  });
});
