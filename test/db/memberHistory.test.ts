/**
 * 0005_member_history upgrades a live, populated database in place: existing members (active and
 * former) keep reading the whole history as before, nothing else changes, and from then on every
 * insert must say where its membership starts.
 */
import { afterAll, describe, expect, it } from "vitest";
import { schemaBefore, type SchemaBefore } from "../helpers/upgrade.js";

const MIGRATION = "0005_member_history.sql";
let before: SchemaBefore | undefined;
afterAll(() => before?.drop());

describe(MIGRATION, () => {
  it("gives existing members the whole history and keeps every row", async () => {
    before = await schemaBefore(MIGRATION);
    const { db } = before;

    await db.exec(`
      INSERT INTO conversations (id, group_id, creator_did, cipher_suite, epoch, next_seq, next_event_seq, created_at)
      VALUES ('c1', 'aa', 'did:plc:alice', 'suite', 2, 4, 6, now());
      INSERT INTO members (convo_id, did, joined_at, left_at) VALUES
        ('c1', 'did:plc:alice', now(), NULL), ('c1', 'did:plc:bob', now(), now());
      INSERT INTO messages (id, convo_id, seq, sender_did, message_type, epoch, ciphertext, created_at) VALUES
        ('m1', 'c1', 1, 'did:plc:alice', 'app', 0, '\\x01', now()),
        ('m2', 'c1', 2, 'did:plc:alice', 'commit', 0, '\\x02', now()),
        ('m3', 'c1', 3, 'did:plc:alice', 'commit', 1, '\\x03', now());
    `);
    const rows = await db.query(`SELECT convo_id, did, joined_at, left_at FROM members ORDER BY did`);

    expect(await before.upgrade()).toEqual([MIGRATION]);

    expect(await db.query(`SELECT convo_id, did, joined_at, left_at FROM members ORDER BY did`)).toEqual(rows);
    expect(await db.query(`SELECT did, joined_seq, joined_event_seq, joined_epoch FROM members ORDER BY did`)).toEqual([
      { did: "did:plc:alice", joined_seq: 1, joined_event_seq: 1, joined_epoch: 0 },
      { did: "did:plc:bob", joined_seq: 1, joined_event_seq: 1, joined_epoch: 0 },
    ]);
    expect(await db.query(`SELECT id FROM messages ORDER BY seq`)).toEqual([{ id: "m1" }, { id: "m2" }, { id: "m3" }]);
    // No default: an insert that does not say where the membership starts is refused.
    await expect(
      db.query(`INSERT INTO members (convo_id, did, joined_at) VALUES ('c1', 'did:plc:carol', now())`),
    ).rejects.toThrow(/joined_seq/);
  });
});
