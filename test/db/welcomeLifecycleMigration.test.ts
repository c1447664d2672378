/**
 * 0004_welcome_lifecycle.sql on a live, populated database: applied after the earlier migrations
 * with data in place, it keeps every row, and the welcome lookups behind 404/410 stop scanning the
 * whole table.
 */
import { afterAll, expect, it } from "vitest";
import { schemaBefore, type SchemaBefore } from "../helpers/upgrade.js";

const MINE = "0004_welcome_lifecycle.sql";
let schema: SchemaBefore | undefined;
afterAll(() => schema?.drop());

const LOOKUP = `SELECT state FROM welcome_messages WHERE convo_id = 'c-17' AND recipient_did = 'did:plc:r-17-3'
                 ORDER BY created_at DESC, id DESC LIMIT 1`;
const plan = async (sql: string) =>
  (await schema!.db.query<{ "QUERY PLAN": string }>(`EXPLAIN ${sql}`)).map((row) => row["QUERY PLAN"]).join("\n");

it("upgrades a populated database in place and serves the welcome lookups from an index", async () => {
  schema = await schemaBefore(MINE);
  const { db } = schema;

  // 500 conversations with 20 welcomes each, in every state, and handed-out key packages.
  await db.exec(`
    INSERT INTO conversations (id, group_id, creator_did, cipher_suite, created_at)
    SELECT 'c-' || i, lpad(to_hex(i), 8, '0'), 'did:plc:creator', 'suite', now() FROM generate_series(1, 500) i;
    INSERT INTO welcome_messages (id, convo_id, recipient_did, welcome, state, created_at, fetched_at, confirmed_at)
    SELECT 'w-' || i || '-' || j, 'c-' || i, 'did:plc:r-' || i || '-' || j, '\\x01',
           (ARRAY['available', 'in_flight', 'consumed', 'expired'])[1 + j % 4], now() - interval '1 day',
           CASE WHEN j % 4 IN (1, 2) THEN now() END, CASE WHEN j % 4 = 2 THEN now() END
      FROM generate_series(1, 500) i, generate_series(1, 20) j;
    INSERT INTO key_packages (owner_did, cipher_suite, key_package, hash, expires_at, created_at, handed_out_at, handed_out_to)
    SELECT 'did:plc:o-' || i, 'suite', '\\x02', lpad(to_hex(i), 64, '0'), now() + interval '1 day', now(),
           CASE WHEN i % 2 = 0 THEN now() END, CASE WHEN i % 2 = 0 THEN 'did:plc:caller' END
      FROM generate_series(1, 1000) i;
    ANALYZE;`);
  // The defect: before this migration the lookup reads the whole table.
  expect(await plan(LOOKUP)).toContain("Seq Scan on welcome_messages");

  expect(await schema.upgrade()).toEqual([MINE]);
  await db.exec("ANALYZE");

  const [counts] = await db.query<{ welcomes: number; states: number; handed: number }>(
    `SELECT (SELECT count(*) FROM welcome_messages) AS welcomes,
            (SELECT count(DISTINCT state) FROM welcome_messages) AS states,
            (SELECT count(*) FROM key_packages WHERE handed_out_to = 'did:plc:caller') AS handed`,
  );
  expect(counts).toEqual({ welcomes: 10_000, states: 4, handed: 500 });
  expect(await db.query(LOOKUP)).toEqual([{ state: "expired" }]);
  expect(await db.query("SELECT count(*) AS n FROM job_leases")).toEqual([{ n: 0 }]);

  expect(await plan(LOOKUP)).toContain("welcome_messages_by_recipient");
  // Cleanup's deletion of retired welcomes has an index of its very expression.
  await db.transaction(async (tx) => {
    await tx.query("SET LOCAL enable_seqscan = off");
    const explained = await tx.query<{ "QUERY PLAN": string }>(
      `EXPLAIN SELECT ctid FROM welcome_messages
        WHERE state IN ('consumed', 'expired') AND coalesce(confirmed_at, fetched_at, created_at) <= now() - interval '30 days'`,
    );
    expect(explained.map((row) => row["QUERY PLAN"]).join("\n")).toContain("welcome_messages_retired_at");
  });
});
