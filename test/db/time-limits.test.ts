/**
 * Every wait on the database is bounded (issue 13, items 9 and 14): the server cancels a statement
 * past the statement limit (it rolled back, so "retry" is true), maintenance transactions get their
 * own limit, and a connection that silently stops carrying bytes fails within the round-trip limit
 * and is replaced, for queries, transactions and LISTEN alike.
 */
import { neonConfig } from "@neondatabase/serverless";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { WebSocket } from "ws";
import { DatabaseError, DatabaseUnavailableError, type Database, type DatabaseLimits } from "../../src/db/driver.js";
import { loadConfig } from "../../src/config.js";
import { databaseLimits, heldSendWaitMs } from "../../src/db/limits.js";
import { createNeonDatabase } from "../../src/db/neon.js";
import { createPostgresDatabase } from "../../src/db/postgres.js";
import { startNeonProxy, type NeonProxy } from "../helpers/neon-proxy.js";
import { startTcpProxy, type TcpProxy } from "../helpers/tcpProxy.js";

const settle = <T>(promise: Promise<T>): Promise<T | unknown> =>
  promise.then(
    (value) => value,
    (error) => error,
  );
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `check` until it holds; fails after a generous deadline (no timing assertion). */
async function eventually(check: () => boolean | Promise<boolean>, what: string, deadlineMs = 60_000): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`never happened: ${what}`);
    await sleep(50);
  }
}

describe("database limits from the configuration", () => {
  it("derives them below REQUEST_TIMEOUT_MS and refuses limits that are not", () => {
    const limits = databaseLimits(loadConfig({ REQUEST_TIMEOUT_MS: "2000" }));
    expect(limits.statementMs).toBeLessThan(limits.roundTripMs);
    expect(limits.roundTripMs).toBeLessThan(2000);
    expect(() => loadConfig({ REQUEST_TIMEOUT_MS: "2000", DB_STATEMENT_TIMEOUT_MS: "2000" })).toThrow(
      /DB_STATEMENT_TIMEOUT_MS: must be below REQUEST_TIMEOUT_MS/,
    );
    expect(() => loadConfig({ DB_STATEMENT_TIMEOUT_MS: "1000", DB_ROUND_TRIP_TIMEOUT_MS: "1000" })).toThrow(
      /DB_ROUND_TRIP_TIMEOUT_MS/,
    );
  });

  it("lets held sends wait 250 ms for a row, or half a short statement's time, at least 25 ms (never 0: no limit)", () => {
    expect(heldSendWaitMs(loadConfig({}))).toBe(250);
    expect(heldSendWaitMs(loadConfig({ DB_STATEMENT_TIMEOUT_MS: "300" }))).toBe(150);
    expect(heldSendWaitMs(loadConfig({ DB_STATEMENT_TIMEOUT_MS: "50" }))).toBe(25);
    expect(heldSendWaitMs(loadConfig({ REQUEST_TIMEOUT_MS: "100" }))).toBe(37);
    // A wait of a millisecond would re-issue a held conversation's statement hundreds of times a second.
    expect(() => loadConfig({ DB_STATEMENT_TIMEOUT_MS: "49" })).toThrow(/DB_STATEMENT_TIMEOUT_MS/);
  });
});

const LIMITS: DatabaseLimits = { statementMs: 400, roundTripMs: 1_500, maintenanceMs: 60_000 };

type Open = (url: string, limits: DatabaseLimits) => Database;

function describeTimeLimits(name: string, open: Open) {
  describe(`${name} adapter time limits`, () => {
    let proxy: TcpProxy;
    const target = new URL(inject("databaseUrl"));
    beforeAll(async () => {
      proxy = await startTcpProxy({ host: target.hostname, port: Number(target.port || 5432) });
    });
    afterAll(() => proxy.close());

    it("cancels a statement past the statement limit with SQLSTATE 57014 and keeps the connection", async () => {
      const db = open(inject("databaseUrl"), LIMITS);
      try {
        const outcome = await settle(db.query("SELECT pg_sleep(5)"));
        expect(outcome).toBeInstanceOf(DatabaseError);
        expect((outcome as DatabaseError).code).toBe("57014");
        const [settings] = await db.query<{ statement: string; lock: string }>(
          "SELECT current_setting('statement_timeout') AS statement, current_setting('lock_timeout') AS lock",
        );
        expect(settings).toEqual({ statement: "400ms", lock: "400ms" });
      } finally {
        await db.close();
      }
    });

    it("runs a maintenance transaction under its own limit, not the request-sized one", async () => {
      const db = open(inject("databaseUrl"), LIMITS);
      try {
        const settings = await db.maintenance(async (tx) => {
          await tx.query("SELECT pg_sleep(0.6)");
          return (
            await tx.query<{ statement: string; lock: string }>(
              "SELECT current_setting('statement_timeout') AS statement, current_setting('lock_timeout') AS lock",
            )
          )[0];
        });
        expect(settings).toEqual({ statement: "1min", lock: "0" });
        // Back to the request-sized limits afterwards (SET LOCAL ended with the transaction).
        const [after] = await db.query<{ statement: string }>(
          "SELECT current_setting('statement_timeout') AS statement",
        );
        expect(after!.statement).toBe("400ms");
      } finally {
        await db.close();
      }
    });

    it("fails a statement and a transaction on a connection that stops carrying bytes, then uses new connections", async () => {
      const db = open(proxy.url(inject("databaseUrl")), LIMITS);
      try {
        expect(await db.query("SELECT 1 AS one")).toEqual([{ one: 1 }]);
        expect(proxy.blackhole()).toBeGreaterThan(0);
        expect(await settle(db.query("SELECT 2 AS two"))).toBeInstanceOf(DatabaseUnavailableError);
        await eventually(
          async () => !((await settle(db.query("SELECT 3 AS three"))) instanceof Error),
          "a new connection answers",
        );

        // The same inside a transaction: its connection goes silent after BEGIN.
        const stuck = settle(
          db.transaction(async (tx) => {
            await tx.query("SELECT 4");
            proxy.blackhole();
            await tx.query("SELECT 5");
          }),
        );
        expect(await stuck).toBeInstanceOf(DatabaseUnavailableError);
        await eventually(
          async () => (await settle(db.transaction((tx) => tx.query("SELECT 6 AS six")))) instanceof Array,
          "a new transaction commits",
        );
      } finally {
        await db.close();
      }
    });
  });
}

const openPostgres: Open = (url, limits) => createPostgresDatabase(url, { max: 2, limits });
describeTimeLimits("postgres.js", openPostgres);

describe("Neon Pool through a local WebSocket proxy", () => {
  let neonProxy: NeonProxy;
  beforeAll(async () => {
    neonProxy = await startNeonProxy();
    neonConfig.webSocketConstructor = WebSocket as unknown as typeof neonConfig.webSocketConstructor;
    neonConfig.wsProxy = neonProxy.wsProxy;
    neonConfig.useSecureWebSocket = false;
    neonConfig.pipelineTLS = false;
    neonConfig.pipelineConnect = false;
  });
  afterAll(() => neonProxy.close());
  describeTimeLimits("Neon", (url, limits) => createNeonDatabase(url, { max: 2, limits }));
});

describe("postgres.js LISTEN on a connection that stops carrying bytes", () => {
  it("notices (its probe does not come back), listens on a new connection and says so", async () => {
    const target = new URL(inject("databaseUrl"));
    const proxy = await startTcpProxy({ host: target.hostname, port: Number(target.port || 5432) });
    const listening = openPostgres(proxy.url(inject("databaseUrl")), LIMITS);
    const admin = postgres(inject("databaseUrl"), { max: 1, onnotice: () => {} });
    const channel = `limits_${crypto.randomUUID().replace(/-/g, "").slice(0, 8)}`;
    const received: string[] = [];
    let listens = 0;
    try {
      const unlisten = await listening.listen!(
        channel,
        (payload) => received.push(payload),
        () => listens++,
      );
      await admin`SELECT pg_notify(${channel}, 'before')`;
      await eventually(() => received.includes("before"), "the first notification");
      const listensBefore = listens;

      expect(proxy.blackhole()).toBeGreaterThan(0);
      let sent = 0;
      await eventually(async () => {
        await admin`SELECT pg_notify(${channel}, ${`after-${++sent}`})`;
        return received.some((payload) => payload.startsWith("after-"));
      }, "a notification after the connection went silent");
      expect(listens, "onListen runs again: notifications may have been missed").toBeGreaterThan(listensBefore);
      await unlisten();
    } finally {
      await Promise.all([listening.close(), admin.end()]);
      await proxy.close();
    }
  });
});
