/**
 * The batch statement's generic plan is made once per connection and kept, maybe while its tables were
 * still small (a new deployment, a fresh bench database): if it reached a table by a scan then, every batch
 * would scan it as it grows (measured: 5 ms per batch of 32 became 240 ms once idempotency_keys held 300k
 * rows). Forced to a generic plan on this run's small tables, it must reach every table by index.
 */
import { afterAll, expect, it } from "vitest";
import { SEND_BATCH_SQL } from "../../src/services/sendBatch.js";
import { testDatabase } from "../helpers/context.js";

const db = testDatabase(1);
afterAll(() => db.close());

/** Every node of an EXPLAIN (FORMAT JSON) plan tree. */
function* nodesOf(plan: Record<string, unknown>): Generator<Record<string, unknown>> {
  yield plan;
  for (const child of (plan.Plans as Record<string, unknown>[] | undefined) ?? []) yield* nodesOf(child);
}

it("reaches every table of the batch statement by index, even in a generic plan made on small tables", async () => {
  const scanned = await db.transaction(async (tx) => {
    await tx.query(`SET LOCAL plan_cache_mode = force_generic_plan`);
    await tx.query(`PREPARE send_batch_plan (text, bytea, timestamptz, text, int) AS ${SEND_BATCH_SQL}`);
    try {
      const [row] = await tx.query<{ "QUERY PLAN": [{ Plan: Record<string, unknown> }] }>(
        `EXPLAIN (FORMAT JSON) EXECUTE send_batch_plan ('[]', '\\x', now(), 'blue.catbird.mls.sendMessage', 1)`,
      );
      return [...nodesOf(row!["QUERY PLAN"][0].Plan)]
        .filter((node) => node["Node Type"] === "Seq Scan")
        .map((node) => node["Relation Name"]);
    } finally {
      await tx.query(`DEALLOCATE send_batch_plan`);
    }
  });
  expect(scanned).toEqual([]);
});
