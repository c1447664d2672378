/**
 * Migration 0014 on a live, populated database: rows stored before it keep every byte, and the hex CHECKs it
 * rewrites without regex backtracking accept and refuse exactly what the old ones did.
 */
import { afterAll, expect, it } from "vitest";
import { schemaBefore, type SchemaBefore } from "../helpers/upgrade.js";

const MIGRATION = "0014_hex_checks_without_backtracking.sql";
const HASH = "0123456789abcdef".repeat(4);
let schema: SchemaBefore | undefined;
afterAll(() => schema?.drop());

/** Inserts a conversation with `groupId`; its id is the group id (unique, and readable in a failure). */
const insertConvo = (groupId: string) =>
  schema!.db.query(
    `INSERT INTO conversations (id, group_id, creator_did, cipher_suite, created_at)
     VALUES ($1, $1, 'did:plc:alice', 'MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519', now())`,
    [groupId],
  );

/** Inserts an idempotency record with `requestHash` (its key is made from it: unique). */
const insertKey = (requestHash: string) =>
  schema!.db.query(
    `INSERT INTO idempotency_keys (caller_did, method, key, request_hash, status_code, response, created_at, expires_at)
     VALUES ('did:plc:alice', 'm', 'key-' || md5($1), $1, 200, '{}', now(), now() + interval '1 day')`,
    [requestHash],
  );

const rejectedGroupIds = ["", "a", "abc", "AB", "zz", "ab ", " ab", "ab\ncd", "ab".repeat(65)];
const rejectedHashes = ["", HASH.slice(1), HASH + "0", HASH.toUpperCase(), HASH.slice(1) + "g", HASH.slice(1) + "\n"];

it("keeps a populated database's rows, and its hex checks refuse what they refused before", async () => {
  schema = await schemaBefore(MIGRATION);
  const { db } = schema;
  await insertConvo("ab");
  await insertConvo("00".repeat(64));
  await insertKey(HASH);
  const before = {
    conversations: await db.query(`SELECT * FROM conversations ORDER BY id`),
    keys: await db.query(`SELECT * FROM idempotency_keys ORDER BY key`),
  };
  for (const groupId of rejectedGroupIds) {
    await expect(insertConvo(groupId), groupId).rejects.toThrow(/conversations_group_id_check/);
  }
  for (const hash of rejectedHashes) {
    await expect(insertKey(hash), hash).rejects.toThrow(/idempotency_keys_request_hash_check/);
  }

  expect(await schema.upgrade()).toEqual([MIGRATION]);

  expect({
    conversations: await db.query(`SELECT * FROM conversations ORDER BY id`),
    keys: await db.query(`SELECT * FROM idempotency_keys ORDER BY key`),
  }).toEqual(before);
  for (const groupId of rejectedGroupIds) {
    await expect(insertConvo(groupId), groupId).rejects.toThrow(/conversations_group_id_check/);
  }
  for (const hash of rejectedHashes) {
    await expect(insertKey(hash), hash).rejects.toThrow(/idempotency_keys_request_hash_check/);
  }
  await insertConvo("0123456789abcdef");
  await insertConvo("ff".repeat(64));
  await insertKey(HASH.split("").reverse().join(""));
  // An UPDATE re-checks the row: a stored conversation still takes its next seq.
  await db.query(`UPDATE conversations SET next_seq = next_seq + 1 WHERE id = 'ab'`);
  // The other 64-hex checks are the same expression on other columns.
  await expect(
    db.query(
      `INSERT INTO key_packages (owner_did, cipher_suite, key_package, hash, expires_at, created_at)
       VALUES ('did:plc:alice', 'MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519', '\\x01', $1, now(), now())`,
      [HASH.slice(1) + "g"],
    ),
  ).rejects.toThrow(/key_packages_hash_check/);
  await expect(
    db.query(
      `INSERT INTO welcome_messages (id, convo_id, recipient_did, welcome, key_package_hash, created_at)
       VALUES ('w1', 'ab', 'did:plc:bob', '\\x01', $1, now())`,
      [HASH + "0"],
    ),
  ).rejects.toThrow(/welcome_messages_key_package_hash_check/);
  await expect(
    db.query(`INSERT INTO welcome_payloads (hash, welcome, used_at) VALUES ($1, '\\x01', now())`, [HASH.toUpperCase()]),
  ).rejects.toThrow(/welcome_payloads_hash_check/);
});
