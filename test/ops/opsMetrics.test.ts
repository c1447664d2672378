/** Every metric an alerting rule or a dashboard panel reads is one the server's /metrics exposes. */
import { afterAll, describe, expect, it } from "vitest";
import { cleanupOnce } from "../../src/jobs/cleanupTimer.js";
import { randomGroupId, testApp, testDatabase, unique } from "../helpers/context.js";
import { clientFor, outcome } from "../helpers/client.js";
import { opsQueries } from "./opsQueries.js";
import { scrape } from "./prometheus.js";
import { exposedNames, metricNames } from "./promql.js";

const db = testDatabase();
afterAll(() => db.close());

describe("metricNames", () => {
  it("finds the names, not functions, labels, strings, durations or keywords", () => {
    const expr =
      'histogram_quantile(0.99, sum by (route, le) (rate(a_bucket{route=~"x{1}", le!="y"}[5m]))) / on() b offset 5m > bool 2 and c';
    expect(metricNames(expr).sort()).toEqual(["a_bucket", "b", "c"]);
    expect(metricNames("time() - max(cleanup_last_run_timestamp_seconds) > 3600")).toEqual([
      "cleanup_last_run_timestamp_seconds",
    ]);
  });
});

describe("the operations kit's queries", () => {
  it("read only metrics that /metrics exposes", async () => {
    const { app, ctx } = testApp(db);
    // Traffic of each kind, so the families show samples as in production, not only their declarations.
    const alice = unique("did:plc:ops");
    const client = clientFor(app, alice);
    const created = await client.createConvo({
      groupId: randomGroupId(),
      cipherSuite: "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519",
    });
    expect(created.status).toBe(200);
    const send = () =>
      client.sendMessage(
        { convoId: created.data.id, ciphertext: new Uint8Array([1, 2, 3]), epoch: 0 },
        { idempotencyKey: "ops-metrics" },
      );
    expect((await send()).status).toBe(200);
    expect((await send()).replayed).toBe(true);
    expect((await outcome(client.getEpoch({ convoId: "no-such-convo" }))).status).toBe(404);
    await cleanupOnce(ctx);

    const { text } = await scrape(app);
    const exposed = exposedNames(text);
    for (const sampled of ["http_request_duration_seconds_bucket", "idempotency_replays_total", "xrpc_errors_total"]) {
      expect(text).toContain(`\n${sampled}{`);
    }

    const queries = await opsQueries();
    // Nine alerts and at least one panel per signal: an empty list would pass vacuously.
    expect(queries.filter((query) => query.source.startsWith("alert ")).length).toBe(9);
    expect(queries.filter((query) => query.source.startsWith("panel ")).length).toBeGreaterThanOrEqual(9);
    const missing = queries.flatMap(({ source, expr }) =>
      metricNames(expr)
        .filter((name) => !exposed.has(name))
        .map((name) => `${source}: ${name}`),
    );
    expect(missing).toEqual([]);
    expect(queries.every(({ expr }) => metricNames(expr).length > 0)).toBe(true);
  });
});
