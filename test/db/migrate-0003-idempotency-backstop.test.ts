/**
 * 0003 upgrades a populated database in place: every message, key and record is kept, and a key
 * whose record has expired can store a second message.
 */
import { afterAll, expect, it } from "vitest";
import { schemaBefore, type SchemaBefore } from "../helpers/upgrade.js";

const MIGRATION = "0003_idempotency_backstop.sql";
let schema: SchemaBefore | undefined;
afterAll(() => schema?.drop());

it("0003 keeps every message and record and lets an expired key store a new message", async () => {
  schema = await schemaBefore(MIGRATION);
  const { db } = schema;

  const sender = "did:plc:migrated";
  await db.exec(`
    INSERT INTO conversations (id, group_id, creator_did, cipher_suite, next_seq, next_event_seq, created_at)
      VALUES ('c1', 'aa', '${sender}', 'MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519', 3, 1, now());
    INSERT INTO members (convo_id, did, joined_at) VALUES ('c1', '${sender}', now());
    INSERT INTO messages (id, convo_id, seq, sender_did, message_type, epoch, ciphertext, idempotency_key, created_at)
      VALUES ('m1', 'c1', 1, '${sender}', 'app', 0, '\\x01', 'k1', now()),
             ('m2', 'c1', 2, '${sender}', 'app', 0, '\\x02', NULL, now());
    INSERT INTO idempotency_keys (caller_did, method, key, request_hash, status_code, response, created_at, expires_at)
      VALUES ('${sender}', 'blue.catbird.mls.sendMessage', 'k1', '${"ab".repeat(32)}', 200, '{"messageId":"m1"}', now(), now() - interval '1 second');
  `);
  const duplicateKey = `INSERT INTO messages (id, convo_id, seq, sender_did, message_type, epoch, ciphertext, idempotency_key, created_at)
    VALUES ('m3', 'c1', 3, '${sender}', 'app', 0, '\\x03', 'k1', now())`;
  await expect(db.query(duplicateKey)).rejects.toThrow(/messages_sender_idempotency_key/);

  expect(await schema.upgrade()).toEqual([MIGRATION]);
  expect(await db.query(`SELECT id, seq, idempotency_key FROM messages ORDER BY seq`)).toEqual([
    { id: "m1", seq: 1, idempotency_key: "k1" },
    { id: "m2", seq: 2, idempotency_key: null },
  ]);
  expect(await db.query(`SELECT key, response FROM idempotency_keys`)).toEqual([
    { key: "k1", response: '{"messageId":"m1"}' },
  ]);
  await db.query(duplicateKey);
  expect(await db.query(`SELECT id FROM messages WHERE idempotency_key = 'k1' ORDER BY seq`)).toEqual([
    { id: "m1" },
    { id: "m3" },
  ]);
});
