import { Pool, types, type PoolClient } from "@neondatabase/serverless";
import { normalized, trackStatements, withSavepoint, type Database, type Queryable, type Row } from "./driver.js";

export interface NeonOptions {
  max?: number;
}

/** int8 as a JS number, like the other adapters; everything else keeps pg's parsers. */
const typeParsers = {
  getTypeParser: ((oid: number, format?: "text" | "binary") =>
    oid === 20 ? (value: string) => Number(value) : types.getTypeParser(oid, format)) as typeof types.getTypeParser,
};

function clientQueryable(client: PoolClient): Queryable {
  const self: Queryable = {
    query: async <T extends object>(text: string, params: readonly unknown[] = []) =>
      normalized(async () => (await client.query(text, params as unknown[])).rows as T[]),
    exec: (script) => normalized(async () => void (await client.query(script))),
    transaction: (fn) => withSavepoint(self, fn),
  };
  return self;
}

/**
 * Neon's serverless driver with its WebSocket Pool, so transactions are interactive.
 * The caller configures `neonConfig` (WebSocket constructor, proxy) for its runtime.
 */
export function createNeonDatabase(url: string, options: NeonOptions = {}): Database {
  const pool = new Pool({ connectionString: url, max: options.max ?? 10, types: typeParsers });
  // An idle client that loses its connection emits here; the next query reconnects.
  pool.on("error", () => {});
  return {
    kind: "neon",
    concurrent: true,
    query: async <T extends object>(text: string, params: readonly unknown[] = []) =>
      normalized(async () => (await pool.query(text, params as unknown[])).rows as T[]),
    exec: (script) => normalized(async () => void (await pool.query(script))),
    transaction: async <T>(fn: (tx: Queryable) => Promise<T>): Promise<T> => {
      const client = await normalized(() => pool.connect());
      let broken = false;
      try {
        await normalized(() => client.query("BEGIN"));
        const { tx, settled } = trackStatements(clientQueryable(client));
        const result = await fn(tx);
        await settled();
        await normalized(() => client.query("COMMIT"));
        return result;
      } catch (error) {
        await client.query("ROLLBACK").catch(() => {
          broken = true;
        });
        throw error;
      } finally {
        client.release(broken);
      }
    },
    close: () => pool.end(),
  };
}
