import postgres from "postgres";
import {
  DatabaseUnavailableError,
  normalized,
  trackStatements,
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
}

type Sql = postgres.Sql<Record<string, postgres.PostgresType>>;
type TransactionSql = postgres.TransactionSql<Record<string, postgres.PostgresType>>;

/** int8 comes back as a JS number: seqs, epochs and counts stay far below 2^53. */
const int8AsNumber = {
  to: 20,
  from: [20],
  serialize: (value: number) => String(value),
  parse: (value: string) => Number(value),
};

function run<T>(sql: Sql | TransactionSql, text: string, params: readonly unknown[], prepare: boolean): Promise<T[]> {
  return normalized(
    () => sql.unsafe(text, params as postgres.ParameterOrJSON<never>[], { prepare }) as unknown as Promise<T[]>,
  );
}

function queryable(sql: Sql, prepare: boolean): Queryable {
  return {
    query: <T extends object>(text: string, params: readonly unknown[] = []) => run<T>(sql, text, params, prepare),
    exec: (script: string) => normalized(async () => void (await sql.unsafe(script))),
    transaction: (fn) => transaction(sql, prepare, fn),
  };
}

/**
 * A transaction through postgres.js's `begin()`, which also fails it when its connection closes.
 * A last statement `fn` did not wait for (the idempotency middleware's stored answer) leaves in the
 * same write as COMMIT, one round trip for both; it is settled after: if it failed, the server
 * turned COMMIT into ROLLBACK, and the transaction fails here.
 */
async function transaction<T>(sql: Sql, prepare: boolean, fn: (tx: Queryable) => Promise<T>): Promise<T> {
  let settled: () => Promise<void> = async () => {};
  const result = await normalized(
    async () =>
      (await sql.begin((begun) => {
        const tracked = trackStatements(begunQueryable(begun, prepare));
        settled = tracked.settled;
        return fn(tracked.tx);
      })) as T,
  );
  await settled();
  return result;
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

/** postgres.js: Node, Deno, and Workers through Hyperdrive. */
export function createPostgresDatabase(url: string, options: PostgresOptions = {}): Database {
  const { max = 10, prepare = true, fetchTypes = true } = options;
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
    return run(queryable(used, prepare)).catch((error: unknown) => {
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
    transaction: <T>(fn: (tx: Queryable) => Promise<T>) => onCurrentClient((client) => client.transaction(fn)),
    listen: async (channel, onPayload, onListen) =>
      (await normalized(() => listener.listen(channel, onPayload, onListen))).unlisten,
    close: async () => {
      closed = true;
      await Promise.all([sql.end({ timeout: 5 }), ...retiring, listener.end({ timeout: 5 })]);
    },
  };
}
