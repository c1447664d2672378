import postgres from "postgres";
import {
  DatabaseUnavailableError,
  normalized,
  trackStatements,
  withSavepoint,
  type Database,
  type Queryable,
  type Row,
} from "./driver.js";

export interface PostgresOptions {
  max?: number;
  /** Named prepared statements; off for poolers that cannot keep them (PgBouncer in transaction mode). */
  prepare?: boolean;
  /** Fetching type OIDs at connect costs a round trip; Workers/Hyperdrive skip it. */
  fetchTypes?: boolean;
  /**
   * Pipelined transactions on a reserved connection (BEGIN with the first statement, COMMIT with the
   * last). Off in Workers: there a transaction on a reserved connection never completed (wrangler 4.86,
   * workerd), so they go through `begin()`.
   */
  pipelined?: boolean;
}

type Sql = postgres.Sql<Record<string, postgres.PostgresType>>;
type ReservedSql = postgres.ReservedSql<Record<string, postgres.PostgresType>>;
type TransactionSql = postgres.TransactionSql<Record<string, postgres.PostgresType>>;

/** int8 comes back as a JS number: seqs, epochs and counts stay far below 2^53. */
const int8AsNumber = {
  to: 20,
  from: [20],
  serialize: (value: number) => String(value),
  parse: (value: string) => Number(value),
};

function run<T>(
  sql: Sql | ReservedSql | TransactionSql,
  text: string,
  params: readonly unknown[],
  prepare: boolean,
): Promise<T[]> {
  return normalized(
    () => sql.unsafe(text, params as postgres.ParameterOrJSON<never>[], { prepare }) as unknown as Promise<T[]>,
  );
}

function queryable(sql: Sql, prepare: boolean, pipelined: boolean): Queryable {
  return {
    query: <T extends object>(text: string, params: readonly unknown[] = []) => run<T>(sql, text, params, prepare),
    exec: (script: string) => normalized(async () => void (await sql.unsafe(script))),
    transaction: (fn) => (pipelined ? transaction(sql, prepare, fn) : beginTransaction(sql, prepare, fn)),
  };
}

/** A transaction through postgres.js's own `begin()`: one round trip more for BEGIN and for COMMIT each. */
function beginTransaction<T>(sql: Sql, prepare: boolean, fn: (tx: Queryable) => Promise<T>): Promise<T> {
  return normalized(
    async () =>
      (await sql.begin(async (begun) => {
        const { tx, settled } = trackStatements(begunQueryable(begun, prepare));
        const result = await fn(tx);
        await settled();
        return result;
      })) as T,
  );
}

/** Inside `begin()`, nested transactions are postgres.js savepoints: it fails a `begin()` whose statement failed unless a savepoint caught it. */
function begunQueryable(begun: TransactionSql, prepare: boolean): Queryable {
  return {
    query: <R extends object>(text: string, params: readonly unknown[] = []) => run<R>(begun, text, params, prepare),
    exec: (script: string) => normalized(async () => void (await begun.unsafe(script))),
    transaction: <R>(nested: (tx: Queryable) => Promise<R>) =>
      normalized(async () => (await begun.savepoint((inner) => nested(begunQueryable(inner, prepare)))) as R),
  };
}

/**
 * A transaction on a reserved connection, pipelined: postgres.js writes everything queued in one
 * tick together, so BEGIN leaves in the same write (and round trip) as the first statement, and
 * COMMIT in the same one as a last statement `fn` did not wait for (the idempotency middleware's
 * stored answer). Round trips bound a send more than CPU does; this saves two.
 */
async function transaction<T>(sql: Sql, prepare: boolean, fn: (tx: Queryable) => Promise<T>): Promise<T> {
  const connection = await normalized(() => sql.reserve());
  try {
    const begin = run(connection, "BEGIN", [], false);
    begin.catch(() => {});
    const reserved: Queryable = {
      query: <R extends object>(text: string, params: readonly unknown[] = []) =>
        run<R>(connection, text, params, prepare),
      exec: (script: string) => normalized(async () => void (await connection.unsafe(script))),
      transaction: (nested) => withSavepoint(reserved, nested),
    };
    const { tx, settled } = trackStatements(reserved);
    const result = await fn(tx);
    const commit = run(connection, "COMMIT", [], false);
    commit.catch(() => {});
    await begin;
    await settled();
    await commit;
    return result;
  } catch (error) {
    await run(connection, "ROLLBACK", [], false).catch(() => {});
    throw error;
  } finally {
    connection.release();
  }
}

/** postgres.js: Node, Deno, and Workers through Hyperdrive. */
export function createPostgresDatabase(url: string, options: PostgresOptions = {}): Database {
  const { max = 10, prepare = true, fetchTypes = true, pipelined = true } = options;
  const open = () =>
    postgres(url, {
      max,
      prepare,
      fetch_types: fetchTypes,
      onnotice: () => {},
      types: { int8: int8AsNumber },
    }) as unknown as Sql;
  let sql = open();
  // LISTEN keeps a connection of its own (opened on first use), apart from the query client.
  const listener = postgres(url, { max: 1, fetch_types: false, onnotice: () => {} });
  let closed = false;
  const retiring = new Set<Promise<void>>();

  /**
   * postgres.js 3.4.9 keeps stale state on a connection whose socket failed (porsager/postgres#1130):
   * a query sent to it before it notices the close never settles, and later queries on it can be handed
   * another query's result. So after a connection failure new queries go to a fresh client, and the old
   * one finishes what it can and is destroyed after 5 s (which rejects anything stuck on it).
   */
  const onCurrentClient = <T>(run: (client: Queryable) => Promise<T>): Promise<T> => {
    const used = sql;
    return run(queryable(used, prepare, pipelined)).catch((error: unknown) => {
      if (error instanceof DatabaseUnavailableError && used === sql && !closed) {
        sql = open();
        const ending = used.end({ timeout: 5 }).finally(() => retiring.delete(ending));
        retiring.add(ending);
      }
      throw error;
    });
  };

  return {
    kind: "postgres",
    concurrent: true,
    query: <T extends object = Row>(text: string, params?: readonly unknown[]) =>
      onCurrentClient((client) => client.query<T>(text, params)),
    exec: (script) => onCurrentClient((client) => client.exec(script)),
    // reserve() would reconnect an ended client: a closed database refuses here, as postgres.js does for queries.
    transaction: <T>(fn: (tx: Queryable) => Promise<T>) =>
      closed
        ? Promise.reject(new DatabaseUnavailableError("the database client is closed"))
        : onCurrentClient((client) => client.transaction(fn)),
    listen: async (channel, onPayload, onListen) =>
      (await normalized(() => listener.listen(channel, onPayload, onListen))).unlisten,
    close: async () => {
      closed = true;
      await Promise.all([sql.end({ timeout: 5 }), ...retiring, listener.end({ timeout: 5 })]);
    },
  };
}
