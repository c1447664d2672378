/**
 * Migration 0007 on a live, populated database: welcome rows stored before it keep their own bytes and are still
 * fetched; rows stored after it reference one welcome_payloads row; a row with neither is refused.
 */
import { afterAll, expect, it } from "vitest";
import { migrate } from "../../src/db/migrate.js";
import { readMigrations } from "../../src/db/migrations-fs.js";
import { fetchWelcome, storeWelcomes } from "../../src/services/welcomes.js";
import { schemaBefore, type SchemaBefore } from "../helpers/upgrade.js";

const MIGRATION = "0007_welcome_payloads.sql";
let schema: SchemaBefore | undefined;
afterAll(() => schema?.drop());

const times = (now: Date) => ({ now, graceSeconds: 300, ttlSeconds: 86_400 });
/** A welcome for the DID's implicit device. */
const to = (did: string) => ({ did, deviceId: "" });

it("keeps the welcomes of a populated database and stores new ones once", async () => {
  schema = await schemaBefore(MIGRATION);
  const { db } = schema;
  const now = new Date();
  await db.query(
    `INSERT INTO conversations (id, group_id, creator_did, cipher_suite, created_at)
     VALUES ('c1', 'ab', 'did:plc:alice', 'MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519', $1)`,
    [now],
  );
  await db.query(
    `INSERT INTO welcome_messages (id, convo_id, recipient_did, welcome, state, created_at, fetched_at, confirmed_at)
     VALUES ('w1', 'c1', 'did:plc:bob', '\\x0102', 'available', $1, NULL, NULL),
            ('w2', 'c1', 'did:plc:carol', '\\x0304', 'in_flight', $1, $1, NULL),
            ('w3', 'c1', 'did:plc:dave', '\\x0506', 'consumed', $1, $1, $1)`,
    [now],
  );
  const before = await db.query(`SELECT * FROM welcome_messages ORDER BY id`);

  expect(await schema.upgrade()).toEqual([MIGRATION]);

  const after = await db.query<Record<string, unknown>>(`SELECT * FROM welcome_messages ORDER BY id`);
  expect(after.map(({ payload_hash, ...rest }) => (expect(payload_hash).toBeNull(), rest))).toEqual(before);
  // The services below are today's: they need the later migrations too.
  await migrate(db, await readMigrations());
  expect(Buffer.from(await fetchWelcome(db, "c1", to("did:plc:bob"), times(now)))).toEqual(Buffer.from([1, 2]));
  expect(Buffer.from(await fetchWelcome(db, "c1", to("did:plc:carol"), times(now)))).toEqual(Buffer.from([3, 4]));

  const welcome = Uint8Array.of(7, 7, 7);
  await db.transaction((tx) =>
    storeWelcomes(
      tx,
      "c1",
      welcome,
      [
        { did: "did:plc:erin", hash: null },
        { did: "did:plc:frank", hash: null },
      ],
      now,
    ),
  );
  const [counts] = await db.query<{ payloads: number; own_bytes: number }>(
    `SELECT (SELECT count(*) FROM welcome_payloads) AS payloads,
            (SELECT count(*) FROM welcome_messages WHERE welcome IS NOT NULL) AS own_bytes`,
  );
  expect({ payloads: Number(counts!.payloads), own_bytes: Number(counts!.own_bytes) }).toEqual({
    payloads: 1,
    own_bytes: 3,
  });
  expect(Buffer.from(await fetchWelcome(db, "c1", to("did:plc:frank"), times(now)))).toEqual(Buffer.from(welcome));

  await expect(
    db.query(
      `INSERT INTO welcome_messages (id, convo_id, recipient_did, state, created_at) VALUES ('w9', 'c1', 'did:plc:gus', 'available', $1)`,
      [now],
    ),
  ).rejects.toThrow(/welcome_messages_has_bytes/);
});
