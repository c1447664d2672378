/**
 * Migration 0006 on a live, populated database: messages stored before it keep every byte, and afterwards
 * message_type accepts 'proposal' besides 'app' and 'commit', and nothing else.
 */
import { afterAll, expect, it } from "vitest";
import { schemaBefore, type SchemaBefore } from "../helpers/upgrade.js";

const MIGRATION = "0006_proposal_messages.sql";
let schema: SchemaBefore | undefined;
afterAll(() => schema?.drop());

const insertMessage = (seq: number, type: string, epoch: number) =>
  schema!.db.query(
    `INSERT INTO messages (id, convo_id, seq, sender_did, message_type, epoch, ciphertext, created_at)
     VALUES ($1, 'c1', $2, 'did:plc:alice', $3, $4, $5, '2026-01-01T00:00:00Z')`,
    [`m${seq}`, seq, type, epoch, Uint8Array.of(seq, 0xff)],
  );

it("keeps the messages of a populated database and then stores proposals", async () => {
  schema = await schemaBefore(MIGRATION);
  const { db } = schema;
  await db.query(
    `INSERT INTO conversations (id, group_id, creator_did, cipher_suite, epoch, next_seq, created_at)
     VALUES ('c1', 'ab', 'did:plc:alice', 'MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519', 1, 4, now())`,
  );
  await insertMessage(1, "app", 0);
  await insertMessage(2, "commit", 0);
  await insertMessage(3, "app", 1);
  await expect(insertMessage(4, "proposal", 1)).rejects.toThrow(/messages_message_type_check/);
  const before = await db.query(`SELECT * FROM messages ORDER BY seq`);

  expect(await schema.upgrade()).toEqual([MIGRATION]);

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
