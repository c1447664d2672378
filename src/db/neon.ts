import { Pool, types, type PoolClient } from "@neondatabase/serverless";
import {
  DatabaseUnavailableError,
  NO_LIMITS,
  normalized,
  trackStatements,
  withinRoundTrip,
  withSavepoint,
  type Database,
  type DatabaseLimits,
  type Queryable,
  type Row,
} from "./driver.js";

export interface NeonOptions {
  max?: number;
  limits?: DatabaseLimits;
}

/** int8 as a JS number, like the other adapters; everything else keeps pg's parsers. */
const typeParsers = {
  getTypeParser: ((oid: number, format?: "text" | "binary") =>
    oid === 20 ? (value: string) => Number(value) : types.getTypeParser(oid, format)) as typeof types.getTypeParser,
};

/**
 * One checked-out client whose round trips are each bounded by `roundTripMs`; a client that failed
 * one (no answer, or a lost connection) is `broken` and gets destroyed on release, not reused.
 */
function boundedClient(client: PoolClient, roundTripMs: number) {
  let broken = false;
  const bounded = <T>(work: () => Promise<T>) =>
    withinRoundTrip(normalized(work), roundTripMs).catch((error: unknown) => {
      if (error instanceof DatabaseUnavailableError) broken = true;
      throw error;
    });
  const tx: Queryable = {
    query: <T extends object>(text: string, params: readonly unknown[] = []) =>
      bounded(async () => (await client.query(text, params as unknown[])).rows as T[]),
    exec: (script) => bounded(async () => void (await client.query(script))),
    transaction: (fn) => withSavepoint(tx, fn),
  };
  return { tx, discard: () => (broken = true), release: () => client.release(broken) };
}

/**
 * Neon's serverless driver with its WebSocket Pool, so transactions are interactive.
 * The caller configures `neonConfig` (WebSocket constructor, proxy) for its runtime.
 */
export function createNeonDatabase(url: string, options: NeonOptions = {}): Database {
  const { max = 10, limits = NO_LIMITS } = options;
  const pool = new Pool({
    connectionString: url,
    max,
    types: typeParsers,
    // Sent at connect (see postgres.ts for why each): the server cancels what outlasts them.
    ...(limits.statementMs > 0 ? { statement_timeout: limits.statementMs, lock_timeout: limits.statementMs } : {}),
    ...(limits.roundTripMs > 0
      ? { idle_in_transaction_session_timeout: limits.roundTripMs, connectionTimeoutMillis: limits.roundTripMs }
      : {}),
  });
  // An idle client that loses its connection emits here; the next query reconnects.
  pool.on("error", () => {});

  const onClient = async <T>(
    roundTripMs: number,
    use: (tx: Queryable, discard: () => void) => Promise<T>,
  ): Promise<T> => {
    const connecting = normalized(() => pool.connect());
    // A connection that arrives after its caller gave up goes back to the pool.
    const late = () =>
      void connecting.then(
        (client) => client.release(),
        () => {},
      );
    const client = boundedClient(await withinRoundTrip(connecting, roundTripMs, late), roundTripMs);
    try {
      return await use(client.tx, client.discard);
    } finally {
      client.release();
    }
  };

  const transaction = <T>(
    roundTripMs: number,
    fn: (tx: Queryable) => Promise<T>,
    setup?: (tx: Queryable) => Promise<unknown>,
  ) =>
    onClient(roundTripMs, async (client, discard) => {
      await client.query("BEGIN");
      try {
        const { tx, settled } = trackStatements(client);
        await setup?.(tx);
        const result = await fn(tx);
        await settled();
        await client.query("COMMIT");
        return result;
      } catch (error) {
        // A client whose ROLLBACK failed is not reused.
        await client.query("ROLLBACK").catch(discard);
        throw error;
      }
    });

  const maintenanceRoundTripMs = limits.maintenanceMs > 0 ? limits.maintenanceMs + 5_000 : 0;
  return {
    kind: "neon",
    concurrent: true,
    query: <T extends object = Row>(text: string, params: readonly unknown[] = []) =>
      onClient(limits.roundTripMs, (client) => client.query<T>(text, params)),
    exec: (script) => onClient(limits.roundTripMs, (client) => client.exec(script)),
    transaction: (fn) => transaction(limits.roundTripMs, fn),
    maintenance: (fn) =>
      transaction(maintenanceRoundTripMs, fn, (tx) =>
        tx.query("SELECT set_config('statement_timeout', $1, true), set_config('lock_timeout', '0', true)", [
          String(limits.maintenanceMs),
        ]),
      ),
    close: () => pool.end(),
  };
}
