import postgres from "postgres";
import { normalized, type Database, type Queryable, type Row } from "./driver.js";

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

function queryable(sql: Sql | TransactionSql, prepare: boolean): Queryable {
  return {
    query: <T extends object>(text: string, params: readonly unknown[] = []) =>
      normalized(() => sql.unsafe(text, params as postgres.ParameterOrJSON<never>[], { prepare }) as unknown as Promise<T[]>),
    exec: (script: string) => normalized(async () => void (await sql.unsafe(script))),
    transaction: <T>(fn: (tx: Queryable) => Promise<T>): Promise<T> =>
      normalized(async () => {
        if ("savepoint" in sql) {
          return (await sql.savepoint((tx) => fn(queryable(tx, prepare)))) as T;
        }
        return (await (sql as Sql).begin((tx) => fn(queryable(tx, prepare)))) as T;
      }),
  };
}

/** postgres.js: Node, Deno, and Workers through Hyperdrive. */
export function createPostgresDatabase(url: string, options: PostgresOptions = {}): Database {
  const { max = 10, prepare = true, fetchTypes = true } = options;
  const sql = postgres(url, {
    max,
    prepare,
    fetch_types: fetchTypes,
    onnotice: () => {},
    types: { int8: int8AsNumber },
  }) as unknown as Sql;
  return {
    kind: "postgres",
    concurrent: true,
    ...queryable(sql, prepare),
    close: () => sql.end({ timeout: 5 }),
  };
}
