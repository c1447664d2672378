/**
 * Migration 0008 on a live, populated database: every row is kept and belongs to the implicit device ('');
 * a recipient still has at most one live welcome per conversation (now per device); read cursors keep working.
 */
import { afterAll, expect, it } from "vitest";
import { UniqueViolationError } from "../../src/db/driver.js";
import { updateCursor } from "../../src/services/readCursors.js";
import { fetchWelcome } from "../../src/services/welcomes.js";
import { schemaBefore, type SchemaBefore } from "../helpers/upgrade.js";

const MIGRATION = "0008_devices.sql";
const SUITE = "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519";
const HASH = "ab".repeat(32);
let schema: SchemaBefore | undefined;
afterAll(() => schema?.drop());

const TABLES = ["conversations", "members", "messages", "key_packages", "welcome_messages", "read_cursors"] as const;
/** What 0008 adds to each table, with the value every existing row must get. */
const ADDED: Record<(typeof TABLES)[number], Record<string, unknown>> = {
  conversations: { roster_checked: false },
  members: {},
  messages: { sender_device: "" },
  key_packages: { device_id: "", last_resort: false },
  welcome_messages: { recipient_device: "" },
  read_cursors: { device_id: "" },
};
const ORDER: Record<(typeof TABLES)[number], string> = {
  conversations: "id",
  members: "convo_id, did",
  messages: "id",
  key_packages: "id",
  welcome_messages: "id",
  read_cursors: "convo_id, did",
};

it("keeps every row of a populated database as the implicit device's, and its rules per device", async () => {
  schema = await schemaBefore(MIGRATION);
  const { db } = schema;
  const now = new Date();
  await db.query(
    `INSERT INTO conversations (id, group_id, creator_did, cipher_suite, epoch, next_seq, next_event_seq, created_at)
     VALUES ('c1', 'ab', 'did:plc:alice', $1, 1, 3, 1, $2), ('c2', 'cd', 'did:plc:bob', $1, 0, 1, 1, $2)`,
    [SUITE, now],
  );
  await db.query(
    `INSERT INTO members (convo_id, did, joined_at, left_at, joined_seq, joined_event_seq, joined_epoch)
     VALUES ('c1', 'did:plc:alice', $1, NULL, 1, 1, 0), ('c1', 'did:plc:bob', $1, NULL, 1, 1, 0),
            ('c1', 'did:plc:carol', $1, $1, 1, 1, 0), ('c2', 'did:plc:bob', $1, NULL, 1, 1, 0)`,
    [now],
  );
  await db.query(
    `INSERT INTO messages (id, convo_id, seq, sender_did, message_type, epoch, ciphertext, created_at)
     VALUES ('m1', 'c1', 1, 'did:plc:alice', 'app', 0, '\\x01', $1), ('m2', 'c1', 2, 'did:plc:alice', 'commit', 0, '\\x02', $1)`,
    [now],
  );
  await db.query(
    `INSERT INTO key_packages (owner_did, cipher_suite, key_package, hash, expires_at, created_at, handed_out_at, handed_out_to)
     VALUES ('did:plc:bob', $1, '\\x0a', $2, $3, $3, NULL, NULL),
            ('did:plc:carol', $1, '\\x0b', $2, $3, $3, $3, 'did:plc:alice')`,
    [SUITE, HASH, now],
  );
  await db.query(`INSERT INTO welcome_payloads (hash, welcome, used_at) VALUES ($1, '\\x0c0d', $2)`, [HASH, now]);
  await db.query(
    `INSERT INTO welcome_messages (id, convo_id, recipient_did, welcome, payload_hash, key_package_hash, state, created_at, fetched_at)
     VALUES ('w1', 'c1', 'did:plc:bob', NULL, $1, $1, 'available', $2, NULL),
            ('w2', 'c1', 'did:plc:carol', '\\x0e', NULL, NULL, 'expired', $2, $2),
            ('w3', 'c2', 'did:plc:bob', '\\x0f', NULL, NULL, 'in_flight', $2, $2)`,
    [HASH, now],
  );
  await db.query(
    `INSERT INTO read_cursors (convo_id, did, cursor, updated_at)
     VALUES ('c1', 'did:plc:alice', '2', $1), ('c1', 'did:plc:bob', '1', $1)`,
    [now],
  );
  const snapshot = async () =>
    Object.fromEntries(
      await Promise.all(
        TABLES.map(
          async (table) => [table, await db.query(`SELECT * FROM ${table} ORDER BY ${ORDER[table]}`)] as const,
        ),
      ),
    );
  const before = await snapshot();

  expect(await schema.upgrade()).toEqual([MIGRATION]);

  const after = await snapshot();
  for (const table of TABLES) {
    expect(after[table], table).toEqual(before[table]!.map((row) => ({ ...row, ...ADDED[table] })));
  }

  // The old live welcomes are still handed out as before.
  const times = { now, graceSeconds: 300, ttlSeconds: 86_400 };
  expect(Buffer.from(await fetchWelcome(db, "c1", { did: "did:plc:bob", deviceId: "" }, times))).toEqual(
    Buffer.from([0x0c, 0x0d]),
  );
  expect(Buffer.from(await fetchWelcome(db, "c2", { did: "did:plc:bob", deviceId: "" }, times))).toEqual(
    Buffer.from([0x0f]),
  );

  // One live welcome per (conversation, recipient, device): the old rule, for the implicit device ...
  const insertWelcome = (id: string, did: string, device: string, state = "available") =>
    db.query(
      `INSERT INTO welcome_messages (id, convo_id, recipient_did, recipient_device, welcome, state, created_at, fetched_at)
       VALUES ($1, 'c1', $2, $3, '\\x10', $4, $5, CASE WHEN $4 = 'in_flight' THEN $5::timestamptz END)`,
      [id, did, device, state, now],
    );
  const duplicate = await insertWelcome("w4", "did:plc:bob", "").catch((error: unknown) => error);
  expect(duplicate).toBeInstanceOf(UniqueViolationError);
  expect((duplicate as UniqueViolationError).constraint).toBe("welcome_messages_live_device");
  await expect(insertWelcome("w5", "did:plc:bob", "", "in_flight")).rejects.toBeInstanceOf(UniqueViolationError);
  // ... and per device: each device of a DID may have one, but only one ...
  await insertWelcome("w6", "did:plc:dave", "phone");
  await insertWelcome("w7", "did:plc:dave", "laptop");
  await expect(insertWelcome("w8", "did:plc:dave", "phone", "in_flight")).rejects.toBeInstanceOf(UniqueViolationError);
  // ... and a retired one does not count (Carol's expired w2).
  await insertWelcome("w9", "did:plc:carol", "");

  // Read cursors: an existing one moves in place, a device may keep its own, and a member who left (Carol) writes none.
  const later = new Date(now.getTime() + 1000);
  await updateCursor(db, { convoId: "c1", did: "did:plc:alice", deviceId: "", cursor: "5", now: later });
  await expect(
    updateCursor(db, { convoId: "c1", did: "did:plc:carol", deviceId: "", cursor: "1", now: later }),
  ).rejects.toMatchObject({ error: "NotMember" });
  await db.query(
    `INSERT INTO read_cursors (convo_id, did, device_id, cursor, updated_at) VALUES ('c1', 'did:plc:alice', 'phone', '3', $1)`,
    [later],
  );
  const cursors = await db.query(
    `SELECT did, device_id, cursor FROM read_cursors WHERE convo_id = 'c1' ORDER BY did, device_id`,
  );
  expect(cursors).toEqual([
    { did: "did:plc:alice", device_id: "", cursor: "5" },
    { did: "did:plc:alice", device_id: "phone", cursor: "3" },
    { did: "did:plc:bob", device_id: "", cursor: "1" },
  ]);
});
