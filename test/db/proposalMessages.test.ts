/**
 * Migration 0006 on a live, populated database: messages stored before it keep every byte, and afterwards
 * message_type accepts 'proposal' besides 'app' and 'commit', and nothing else.
 */
import postgres from "postgres";
import { afterAll, expect, inject, it } from "vitest";
import { migrate } from "../../src/db/migrate.js";
import { readMigrations } from "../../src/db/migrations-fs.js";
import { createPostgresDatabase } from "../../src/db/postgres.js";
import { unique } from "../helpers/context.js";

const MIGRATION = "0006_proposal_messages.sql";
const admin = postgres(inject("adminUrl"), { max: 1, onnotice: () => {} });
const name = unique("mls_migrate_0006_");
let db: ReturnType<typeof createPostgresDatabase> | undefined;

afterAll(async () => {
  await db?.close();
  await admin.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await admin.end();
});

const insertMessage = (seq: number, type: string, epoch: number) =>
  db!.query(
    `INSERT INTO messages (id, convo_id, seq, sender_did, message_type, epoch, ciphertext, created_at)
     VALUES ($1, 'c1', $2, 'did:plc:alice', $3, $4, $5, '2026-01-01T00:00:00Z')`,
    [`m${seq}`, seq, type, epoch, Uint8Array.of(seq, 0xff)],
  );

it("keeps the messages of a populated database and then stores proposals", async () => {
  await admin.unsafe(`CREATE DATABASE ${name}`);
  const url = new URL(inject("adminUrl"));
  url.pathname = `/${name}`;
  db = createPostgresDatabase(url.toString(), { max: 1 });
  const migrations = await readMigrations();
  expect(migrations.map((migration) => migration.name)).toContain(MIGRATION);

  await migrate(
    db,
    migrations.filter((migration) => migration.name < MIGRATION),
  );
  await db.query(
    `INSERT INTO conversations (id, group_id, creator_did, cipher_suite, epoch, next_seq, created_at)
     VALUES ('c1', 'ab', 'did:plc:alice', 'MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519', 1, 4, now())`,
  );
  await insertMessage(1, "app", 0);
  await insertMessage(2, "commit", 0);
  await insertMessage(3, "app", 1);
  await expect(insertMessage(4, "proposal", 1)).rejects.toThrow(/messages_message_type_check/);
  const before = await db.query(`SELECT * FROM messages ORDER BY seq`);

  expect(await migrate(db, migrations)).toContain(MIGRATION);

  expect(await db.query(`SELECT * FROM messages ORDER BY seq`)).toEqual(before);
  await insertMessage(4, "proposal", 1);
  await expect(insertMessage(5, "bogus", 1)).rejects.toThrow(/messages_message_type_check/);
  // One commit per epoch still holds; a proposal beside a commit of the same epoch is no second commit.
  await expect(insertMessage(5, "commit", 0)).rejects.toThrow(/messages_one_commit_per_epoch/);
  await insertMessage(5, "proposal", 0);
  expect(
    (await db.query<{ message_type: string }>(`SELECT message_type FROM messages ORDER BY seq`)).map(
      (row) => row.message_type,
    ),
  ).toEqual(["app", "commit", "app", "proposal", "proposal"]);
});
