/**
 * One contract, three adapters: whatever runs underneath (postgres.js, Neon's Pool, PGlite),
 * services get the same types back, the same transaction semantics and the same typed errors.
 */
import { neonConfig } from "@neondatabase/serverless";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { WebSocket } from "ws";
import { DatabaseError, DatabaseUnavailableError, UniqueViolationError, type Database } from "../../src/db/driver.js";
import { createNeonDatabase } from "../../src/db/neon.js";
import { createPgliteDatabase } from "../../src/db/pglite.js";
import { createPostgresDatabase } from "../../src/db/postgres.js";
import { unique } from "../helpers/context.js";
import { startNeonProxy, type NeonProxy } from "../helpers/neon-proxy.js";

/** Settles a promise into its value or its rejection, so both outcomes can be asserted on. */
const settle = <T>(promise: Promise<T>): Promise<T | unknown> =>
  promise.then(
    (value) => value,
    (error) => error,
  );

function describeDriverContract(name: string, open: () => Promise<Database>) {
  describe(`${name} adapter`, () => {
    let db: Database;
    // A table of its own: files and adapters share the run's database and run in parallel.
    const table = unique("contract_");
    const labelKey = `${table}_label_key`;
    const labels = async (filter: string) =>
      (
        await db.query<{ label: string }>(`SELECT label FROM ${table} WHERE label LIKE $1 ORDER BY label`, [
          `${filter}%`,
        ])
      ).map((row) => row.label);

    // PGlite compiles its WASM at start: 2–4 s on an idle machine, tens of seconds on a loaded 2-core one.
    beforeAll(async () => {
      db = await open();
      await db.exec(
        `CREATE TABLE ${table} (id serial PRIMARY KEY, label text NOT NULL, CONSTRAINT ${labelKey} UNIQUE (label))`,
      );
    }, 180_000);
    afterAll(async () => {
      await db.exec(`DROP TABLE IF EXISTS ${table}`);
      await db.close();
    });

    it("binds parameters and returns text, int, bigint as number, boolean and null", async () => {
      const [row] = await db.query(
        "SELECT $1::text AS t, $2::int AS i, $3::bigint AS b, $4::boolean AS f, $5::text AS n, count(*) AS c FROM (VALUES (1), (2)) v(x)",
        ["héllo 'quoted' ✓", 42, Number.MAX_SAFE_INTEGER, true, null],
      );
      expect(row).toEqual({ t: "héllo 'quoted' ✓", i: 42, b: Number.MAX_SAFE_INTEGER, f: true, n: null, c: 2 });
    });

    it("round-trips bytea as bytes, all 256 values", async () => {
      const bytes = Uint8Array.from({ length: 256 }, (_, index) => index);
      const [row] = await db.query<{ b: Uint8Array; length: number }>(
        "SELECT $1::bytea AS b, octet_length($1::bytea) AS length",
        [bytes],
      );
      expect(row!.length).toBe(256);
      expect(row!.b).toBeInstanceOf(Uint8Array);
      expect(new Uint8Array(row!.b)).toEqual(bytes);
    });

    it("round-trips timestamptz as a Date, to the millisecond", async () => {
      const at = new Date("2024-02-29T23:59:58.123Z");
      const [row] = await db.query<{ at: Date; later: Date }>(
        "SELECT $1::timestamptz AS at, $1::timestamptz + interval '1 millisecond' AS later",
        [at],
      );
      expect(row!.at).toBeInstanceOf(Date);
      expect(row!.at.getTime()).toBe(at.getTime());
      expect(row!.later.getTime()).toBe(at.getTime() + 1);
    });

    it("stores jsonb sent as text and cast in SQL", async () => {
      const value = { name: "ünïcode", list: [1, true, null, "x"], nested: { deep: { n: 1.5 } } };
      const [row] = await db.query<{ j: unknown; name: string }>(
        "SELECT $1::text::jsonb AS j, ($1::text::jsonb)->>'name' AS name",
        [JSON.stringify(value)],
      );
      expect(row).toEqual({ j: value, name: "ünïcode" });
    });

    it("commits a transaction and returns its result", async () => {
      const label = unique("commit-");
      const result = await db.transaction(async (tx) => {
        await tx.query(`INSERT INTO ${table} (label) VALUES ($1)`, [label]);
        return (await tx.query<{ n: number }>(`SELECT count(*) AS n FROM ${table} WHERE label = $1`, [label]))[0]!.n;
      });
      expect(result).toBe(1);
      expect(await labels(label)).toEqual([label]);
    });

    it("rolls back when the callback throws and rethrows the same error", async () => {
      const label = unique("rollback-");
      const failure = new Error("callback failed");
      const outcome = await settle(
        db.transaction(async (tx) => {
          await tx.query(`INSERT INTO ${table} (label) VALUES ($1)`, [`${label}-a`]);
          await tx.query(`INSERT INTO ${table} (label) VALUES ($1)`, [`${label}-b`]);
          throw failure;
        }),
      );
      expect(outcome).toBe(failure);
      expect(await labels(label)).toEqual([]);
    });

    it("commits a last statement the callback did not wait for", async () => {
      const label = unique("unawaited-");
      await db.transaction(async (tx) => {
        await tx.query(`INSERT INTO ${table} (label) VALUES ($1)`, [`${label}-a`]);
        void tx.query(`INSERT INTO ${table} (label) VALUES ($1)`, [`${label}-b`]);
      });
      expect(await labels(label)).toEqual([`${label}-a`, `${label}-b`]);
    });

    it("fails and rolls back the transaction when a statement the callback did not wait for fails", async () => {
      const label = unique("unawaited-fail-");
      await db.query(`INSERT INTO ${table} (label) VALUES ($1)`, [`${label}-taken`]);
      const outcome = await settle(
        db.transaction(async (tx) => {
          await tx.query(`INSERT INTO ${table} (label) VALUES ($1)`, [`${label}-written`]);
          void tx.query(`INSERT INTO ${table} (label) VALUES ($1)`, [`${label}-taken`]);
        }),
      );
      expect(outcome).toBeInstanceOf(UniqueViolationError);
      expect(await labels(label)).toEqual([`${label}-taken`]);
    });

    it("fails the transaction when the callback swallowed a failed statement (Postgres aborted it)", async () => {
      const label = unique("swallowed-");
      await db.query(`INSERT INTO ${table} (label) VALUES ($1)`, [`${label}-taken`]);
      const outcome = await settle(
        db.transaction(async (tx) => {
          await settle(tx.query(`INSERT INTO ${table} (label) VALUES ($1)`, [`${label}-taken`]));
          return "reported as committed";
        }),
      );
      expect(outcome).toBeInstanceOf(UniqueViolationError);
    });

    it("rolls back a nested transaction (savepoint) and keeps the outer writes", async () => {
      const label = unique("nested-");
      const failure = new Error("inner failed");
      await db.transaction(async (tx) => {
        await tx.query(`INSERT INTO ${table} (label) VALUES ($1)`, [`${label}-1-outer`]);
        await tx.transaction(async (inner) => {
          await inner.query(`INSERT INTO ${table} (label) VALUES ($1)`, [`${label}-2-kept`]);
        });
        const outcome = await settle(
          tx.transaction(async (inner) => {
            await inner.query(`INSERT INTO ${table} (label) VALUES ($1)`, [`${label}-3-undone`]);
            throw failure;
          }),
        );
        expect(outcome).toBe(failure);
        await tx.query(`INSERT INTO ${table} (label) VALUES ($1)`, [`${label}-4-after`]);
      });
      expect(await labels(label)).toEqual([`${label}-1-outer`, `${label}-2-kept`, `${label}-4-after`]);
    });

    it("keeps the outer transaction usable after a SQL error inside a savepoint", async () => {
      const label = unique("recover-");
      await db.query(`INSERT INTO ${table} (label) VALUES ($1)`, [`${label}-taken`]);
      await db.transaction(async (tx) => {
        const outcome = await settle(
          tx.transaction((inner) => inner.query(`INSERT INTO ${table} (label) VALUES ($1)`, [`${label}-taken`])),
        );
        expect(outcome).toBeInstanceOf(UniqueViolationError);
        await tx.query(`INSERT INTO ${table} (label) VALUES ($1)`, [`${label}-written`]);
      });
      expect(await labels(label)).toEqual([`${label}-taken`, `${label}-written`]);
    });

    it("surfaces a unique violation as UniqueViolationError with the constraint name", async () => {
      const label = unique("dup-");
      await db.query(`INSERT INTO ${table} (label) VALUES ($1)`, [label]);
      const direct = await settle(db.query(`INSERT INTO ${table} (label) VALUES ($1)`, [label]));
      const inTransaction = await settle(
        db.transaction((tx) => tx.query(`INSERT INTO ${table} (label) VALUES ($1)`, [label])),
      );
      for (const error of [direct, inTransaction]) {
        expect(error).toBeInstanceOf(UniqueViolationError);
        expect(error).toMatchObject({ code: "23505", constraint: labelKey });
      }
    });

    it("surfaces other SQL errors as DatabaseError with their SQLSTATE", async () => {
      const cases: [string, string][] = [
        ["SELECT 1 / 0", "22012"],
        [`SELECT * FROM ${table}_missing`, "42P01"],
        ["SELEC 1", "42601"],
        [`INSERT INTO ${table} (label) VALUES (NULL)`, "23502"],
      ];
      for (const [text, code] of cases) {
        const error = await settle(db.query(text));
        expect(error).toBeInstanceOf(DatabaseError);
        expect(error).not.toBeInstanceOf(UniqueViolationError);
        expect((error as DatabaseError).code).toBe(code);
      }
      const fromExec = await settle(db.exec("SELECT 1; SELECT 1 / 0;"));
      expect(fromExec).toBeInstanceOf(DatabaseError);
      expect((fromExec as DatabaseError).code).toBe("22012");
    });

    it("executes a multi-statement script", async () => {
      const scratch = unique("script_");
      await db.exec(`
        CREATE TABLE ${scratch} (n int NOT NULL);
        INSERT INTO ${scratch} VALUES (1);
        INSERT INTO ${scratch} VALUES (2), (3);
        UPDATE ${scratch} SET n = n * 10 WHERE n = 3;
      `);
      const rows = await db.query<{ n: number }>(`SELECT n FROM ${scratch} ORDER BY n`);
      await db.exec(`DROP TABLE ${scratch}`);
      expect(rows.map((row) => row.n)).toEqual([1, 2, 30]);
    });
  });
}

/** The backend pid of the single connection of a `max: 1` database. */
async function backendPid(db: Database): Promise<number> {
  return (await db.query<{ pid: number }>("SELECT pg_backend_pid() AS pid"))[0]!.pid;
}

/** For the adapters with real connections: losing one is a typed error, never a hang or an untyped error. */
function describeConnectionLoss(name: string, openSingleConnection: () => Database) {
  describe(`${name} adapter losing its connection`, () => {
    const admin = postgres(inject("databaseUrl"), { max: 1, onnotice: () => {} });
    afterAll(() => admin.end());
    const terminate = (pid: number) => admin`SELECT pg_terminate_backend(${pid})`;

    it("fails a statement in flight with DatabaseUnavailableError when its backend is terminated, then reconnects", async () => {
      const db = openSingleConnection();
      try {
        const pid = await backendPid(db);
        const marker = unique("sleep_");
        const sleeping = settle(db.query(`SELECT pg_sleep(30) AS ${marker}`));
        // Wait until the statement runs on the server, then kill its backend.
        while (
          (await admin`SELECT 1 FROM pg_stat_activity WHERE pid = ${pid} AND query LIKE ${`%${marker}%`}`).length === 0
        ) {
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        await terminate(pid);
        expect(await sleeping).toBeInstanceOf(DatabaseUnavailableError);
        expect(await db.query("SELECT 1 AS one")).toEqual([{ one: 1 }]);
        expect(await backendPid(db)).not.toBe(pid);
      } finally {
        await db.close();
      }
    });

    it("answers each statement after an idle connection was terminated with rows or DatabaseUnavailableError, then recovers", async () => {
      const db = openSingleConnection();
      try {
        // Several rounds: whether the first statement meets the dead socket or a fresh one is a race.
        for (let round = 0; round < 5; round++) {
          await terminate(await backendPid(db));
          for (let attempt = 0; attempt < 3; attempt++) {
            const outcome = await settle(db.query<{ one: number }>("SELECT 1 AS one"));
            if (outcome instanceof Error) expect(outcome).toBeInstanceOf(DatabaseUnavailableError);
            else expect(outcome).toEqual([{ one: 1 }]);
          }
          expect(await db.query("SELECT 2 AS two")).toEqual([{ two: 2 }]);
        }
      } finally {
        await db.close();
      }
    });

    it("rejects statements on a closed database with DatabaseUnavailableError", async () => {
      const db = openSingleConnection();
      await db.query("SELECT 1");
      await db.close();
      expect(await settle(db.query("SELECT 1"))).toBeInstanceOf(DatabaseUnavailableError);
      expect(await settle(db.transaction((tx) => tx.query("SELECT 1")))).toBeInstanceOf(DatabaseUnavailableError);
    });
  });
}

describeDriverContract("PGlite (in memory)", () => createPgliteDatabase());

describeDriverContract("postgres.js", async () => createPostgresDatabase(inject("databaseUrl"), { max: 4 }));
describeConnectionLoss("postgres.js", () => createPostgresDatabase(inject("databaseUrl"), { max: 1 }));

describe("Neon Pool through a local WebSocket proxy", () => {
  let proxy: NeonProxy;
  beforeAll(async () => {
    proxy = await startNeonProxy();
    neonConfig.webSocketConstructor = WebSocket as unknown as typeof neonConfig.webSocketConstructor;
    neonConfig.wsProxy = proxy.wsProxy;
    neonConfig.useSecureWebSocket = false;
    neonConfig.pipelineTLS = false;
    // Pipelining the startup assumes password auth; a trust-auth server answers "invalid frontend message type 112".
    neonConfig.pipelineConnect = false;
  });
  afterAll(() => proxy.close());

  describeDriverContract("Neon", async () => createNeonDatabase(inject("databaseUrl"), { max: 4 }));
  describeConnectionLoss("Neon", () => createNeonDatabase(inject("databaseUrl"), { max: 1 }));
});
