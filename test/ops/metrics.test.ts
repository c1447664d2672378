import { afterAll, describe, expect, it } from "vitest";
import type { Hono } from "hono";
import { ManualClock } from "../../src/clock.js";
import { cleanupOnce } from "../../src/jobs/cleanupTimer.js";
import type { CleanupResult } from "../../src/jobs/cleanup.js";
import { randomGroupId, testApp, testDatabase, unique } from "../helpers/context.js";
import { clientFor, outcome } from "../helpers/client.js";
import { scrape, valueOf } from "./prometheus.js";

const SUITE = "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519";
const NSID = "/xrpc/blue.catbird.mls.";

const db = testDatabase();
afterAll(() => db.close());

type App = ReturnType<typeof testApp>["app"];

async function createConvo(app: App, did: string): Promise<string> {
  const created = await clientFor(app, did).createConvo({ groupId: randomGroupId(), cipherSuite: SUITE });
  expect(created.status).toBe(200);
  return created.data.id;
}

describe("GET /metrics", () => {
  it("refuses a method no route knows before it is counted: no client-chosen method becomes a label", async () => {
    const { app } = testApp(db);
    const method = `X${unique("M").toUpperCase()}`;
    const refused = await app.request("/health", { method });
    expect(refused.status).toBe(501);
    expect(refused.headers.get("X-Request-Id")).toBeTruthy();
    expect(await refused.json()).toEqual({ error: "NotImplemented", message: "unknown HTTP method" });
    expect((await app.request("/health", { method: "PATCH" })).status).toBe(404);
    const { text } = await scrape(app);
    expect(text).not.toContain(method);
    expect(text).toContain('method="PATCH"');
  });

  it("counts requests by method, route and status, times them in a histogram, and needs no token", async () => {
    const { app } = testApp(db);
    const alice = unique("did:plc:metrics");
    await createConvo(app, alice);
    const client = clientFor(app, alice);
    expect((await client.getConvos()).status).toBe(200);
    expect((await client.getConvos()).status).toBe(200);
    expect((await outcome(client.getEpoch({ convoId: "no-such-convo" }))).status).toBe(404);
    expect((await outcome(clientFor(app, null).getConvos())).status).toBe(401);
    expect((await app.request(`/nowhere/${unique("path")}`)).status).toBe(404);

    const { contentType, text, samples } = await scrape(app);
    expect(contentType).toMatch(/^text\/plain; version=0\.0\.4/);
    const count = (method: string, route: string, status: string) =>
      valueOf(samples, "http_requests_total", { method, route, status });
    expect(count("POST", `${NSID}createConvo`, "200")).toBe(1);
    expect(count("GET", `${NSID}getConvos`, "200")).toBe(2);
    expect(count("GET", `${NSID}getConvos`, "401")).toBe(1);
    expect(count("GET", `${NSID}getEpoch`, "404")).toBe(1);
    // Unknown paths share one route label: request paths never become label values.
    expect(samples.some((sample) => sample.labels.route?.startsWith("/nowhere"))).toBe(false);
    expect(count("GET", "/*", "404")).toBe(1);

    expect(text).toContain("# TYPE http_request_duration_seconds histogram");
    const getConvos = { method: "GET", route: `${NSID}getConvos`, status: "200" };
    expect(valueOf(samples, "http_request_duration_seconds_count", getConvos)).toBe(2);
    expect(valueOf(samples, "http_request_duration_seconds_bucket", { ...getConvos, le: "+Inf" })).toBe(2);
    expect(valueOf(samples, "http_request_duration_seconds_sum", getConvos)).toBeGreaterThanOrEqual(0);
  });

  it("keeps each app's counts to itself (no process-wide registry)", async () => {
    const first = testApp(db).app;
    const second = testApp(db).app;
    expect((await first.request("/health")).status).toBe(200);
    expect((await first.request("/health")).status).toBe(200);
    const health = { method: "GET", route: "/health", status: "200" };
    expect(valueOf((await scrape(first)).samples, "http_requests_total", health)).toBe(2);
    expect(valueOf((await scrape(second)).samples, "http_requests_total", health)).toBeUndefined();
  });

  it("counts idempotent replays per method and source (this process's recent answers, or the database)", async () => {
    const { app } = testApp(db);
    const alice = unique("did:plc:replay");
    const convoId = await createConvo(app, alice);
    /** A keyed send through `on`: the same bytes for the same key. */
    const send = (on: Hono = app, key = "metrics-replay", ciphertext = new Uint8Array([1, 2, 3, 4])) =>
      clientFor(on, alice).sendMessage({ convoId, ciphertext, epoch: 0 }, { idempotencyKey: key });
    expect((await send()).replayed).toBe(false);
    const replays = (from: string, on: Hono = app) =>
      scrape(on).then(({ samples }) =>
        valueOf(samples, "idempotency_replays_total", { method: "blue.catbird.mls.sendMessage", from }),
      );
    expect(await replays("memory")).toBeUndefined();
    expect((await send()).replayed).toBe(true);
    expect(await replays("memory")).toBe(1);
    expect((await send()).replayed).toBe(true);
    expect(await replays("memory")).toBe(2);
    // Another process (no recent answers) reads the same key's answer from the database.
    const other = testApp(db, { IDEMPOTENCY_RECENT_BYTES: "0" }).app;
    const again = await send(other);
    expect(again.replayed).toBe(true);
    expect(await replays("database", other)).toBe(1);
    // A repeat of a request that process committed itself is read by key.
    const sendOther = () => send(other, "metrics-known", new Uint8Array([5, 6, 7]));
    expect((await sendOther()).replayed).toBe(false);
    expect((await sendOther()).replayed).toBe(true);
    expect(await replays("key", other)).toBe(1);
  });

  it("counts error answers by XRPC error name", async () => {
    const { app } = testApp(db);
    const alice = unique("did:plc:errors");
    expect((await outcome(clientFor(app, alice).getEpoch({ convoId: "no-such-convo" }))).status).toBe(404);
    expect(valueOf((await scrape(app)).samples, "xrpc_errors_total", { error: "ConvoNotFound" })).toBe(1);

    // A database that cannot be reached: readiness answers NotReady.
    const closed = testDatabase(1);
    await closed.close();
    const down = testApp(closed).app;
    expect((await down.request("/health/ready")).status).toBe(503);
    expect((await down.request("/health/ready")).status).toBe(503);
    expect(valueOf((await scrape(down)).samples, "xrpc_errors_total", { error: "NotReady" })).toBe(2);
  });

  it("shows database pool use: statements and transactions in flight, and the pool's size", async () => {
    const { app, ctx } = testApp(db, { DATABASE_POOL_MAX: "7" });
    const inFlight = async () => {
      const { samples } = await scrape(app);
      return [valueOf(samples, "db_queries_in_flight"), valueOf(samples, "db_transactions_in_flight")];
    };
    expect((await app.request("/health/ready")).status).toBe(200);
    expect(await inFlight()).toEqual([0, 0]);
    expect(valueOf((await scrape(app)).samples, "db_pool_max_connections")).toBe(7);

    const counted = ctx.metrics.instrument(ctx.db, 7);
    const running = counted.query("SELECT pg_sleep(0.05)");
    expect(await inFlight()).toEqual([1, 0]);
    await running;
    await counted.transaction(async (tx) => {
      await tx.query("SELECT 1");
      expect(await inFlight()).toEqual([0, 1]);
    });
    expect(await inFlight()).toEqual([0, 0]);
  });

  it("records the counts of each cleanup run, and failed runs", async () => {
    const clock = new ManualClock();
    const { app, ctx } = testApp(db, { IDEMPOTENCY_TTL_SECONDS: "60" }, clock);
    const alice = unique("did:plc:cleanmetrics");
    const convoId = await createConvo(app, alice);
    const sent = await clientFor(app, alice).sendMessage(
      { convoId, ciphertext: new Uint8Array([1, 2, 3]), epoch: 0 },
      { idempotencyKey: "expires" },
    );
    expect(sent.status).toBe(200);
    clock.advance(61_000);

    // Another test file may hold the cleanup lock for a moment: that run counts as skipped.
    let result: CleanupResult | undefined;
    for (let attempt = 0; attempt < 50 && !result?.ran; attempt++) {
      result = await cleanupOnce(ctx);
      if (!result?.ran) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    if (!result?.ran) throw new Error("cleanup never got its lock");

    const { samples } = await scrape(app);
    expect(valueOf(samples, "cleanup_runs_total", { outcome: "ran" })).toBe(1);
    expect(result.idempotencyKeys).toBeGreaterThanOrEqual(1);
    for (const [kind, count] of Object.entries(result)) {
      if (typeof count === "number") expect(valueOf(samples, "cleanup_rows_total", { kind })).toBe(count);
    }
    expect(valueOf(samples, "cleanup_last_run_timestamp_seconds")).toBeGreaterThan(0);

    const closed = testDatabase(1);
    await closed.close();
    expect(await cleanupOnce({ ...ctx, db: closed })).toBeUndefined();
    expect(valueOf((await scrape(app)).samples, "cleanup_runs_total", { outcome: "failed" })).toBe(1);
  });
});
