import postgres from "postgres";
import {
  DatabaseUnavailableError,
  NO_LIMITS,
  noAnswer,
  normalized,
  trackStatements,
  withinRoundTrip,
  type Database,
  type DatabaseLimits,
  type Queryable,
  type Row,
} from "./driver.js";

export interface PostgresOptions {
  max?: number;
  /** Named prepared statements; off for poolers that cannot keep them (PgBouncer in transaction mode). */
  prepare?: boolean;
  /** Fetching type OIDs at connect costs a round trip; Workers/Hyperdrive skip it. */
  fetchTypes?: boolean;
  limits?: DatabaseLimits;
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

/** TCP keepalive idle time: a peer that vanished while the connection sat idle is noticed. */
const KEEP_ALIVE_SECONDS = 10;
/** The LISTEN connection proves it still delivers this often (a notification to itself). */
const LISTEN_PROBE_MS = 5_000;

/**
 * What bounds the statements of one client or transaction: each round trip gets `roundTripMs`;
 * `dead` runs when one exceeds it (the connection is presumed dead).
 */
interface Bounds {
  roundTripMs: number;
  dead: () => void;
  prepare: boolean;
}

function run<T>(sql: Sql | TransactionSql, text: string, params: readonly unknown[], bounds: Bounds): Promise<T[]> {
  const statement = normalized(
    () =>
      sql.unsafe(text, params as postgres.ParameterOrJSON<never>[], { prepare: bounds.prepare }) as unknown as Promise<
        T[]
      >,
  );
  return withinRoundTrip(statement, bounds.roundTripMs, bounds.dead);
}

/** A script of several statements without parameters (migrations), under the same round-trip bound. */
function runScript(sql: Sql | TransactionSql, script: string, bounds: Bounds): Promise<void> {
  return withinRoundTrip(
    normalized(async () => void (await sql.unsafe(script))),
    bounds.roundTripMs,
    bounds.dead,
  );
}

function queryable(sql: Sql, bounds: Bounds): Queryable {
  return {
    query: <T extends object>(text: string, params: readonly unknown[] = []) => run<T>(sql, text, params, bounds),
    exec: (script: string) => runScript(sql, script, bounds),
    transaction: (fn) => transaction(sql, bounds, fn),
  };
}

/**
 * Fails a transaction whose connection stopped answering. Armed while the adapter itself waits for a
 * round trip that has no timer of its own (BEGIN, SAVEPOINT, RELEASE, COMMIT, ROLLBACK), paused while
 * `fn` runs (its statements are bounded one by one; a statement that times out trips it too).
 */
function watchdog(roundTripMs: number) {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let trip!: (error: Error) => void;
  const tripped = new Promise<never>((_, reject) => (trip = reject));
  tripped.catch(() => {});
  const pause = () => clearTimeout(timer);
  return {
    tripped,
    trip: () => trip(noAnswer(roundTripMs)),
    arm: () => {
      pause();
      if (roundTripMs > 0) timer = setTimeout(() => trip(noAnswer(roundTripMs)), roundTripMs);
    },
    pause,
  };
}

/**
 * A transaction through postgres.js's `begin()`, which also fails it when its connection closes.
 * A last statement `fn` did not wait for (the idempotency middleware's stored answer) leaves in the
 * same write as COMMIT, one round trip for both; it is settled after: if it failed, the server
 * turned COMMIT into ROLLBACK, and the transaction fails here. A connection that stops answering
 * fails the transaction within one round-trip limit, with `DatabaseUnavailableError`: the caller
 * discards the client, and the server rolls back (idle_in_transaction_session_timeout) if COMMIT never
 * reached it.
 */
async function transaction<T>(
  sql: Sql,
  bounds: Bounds,
  fn: (tx: Queryable) => Promise<T>,
  setup?: (tx: Queryable) => Promise<unknown>,
): Promise<T> {
  const guard = watchdog(bounds.roundTripMs);
  const inner: Bounds = {
    ...bounds,
    dead: () => {
      bounds.dead();
      guard.trip();
    },
  };
  let settled: () => Promise<void> = async () => {};
  guard.arm();
  const begun = normalized(
    async () =>
      (await sql.begin(async (tx) => {
        guard.pause();
        try {
          const tracked = trackStatements(begunQueryable(tx, inner, guard));
          settled = tracked.settled;
          await setup?.(tracked.tx);
          return await fn(tracked.tx);
        } finally {
          guard.arm();
        }
      })) as T,
  );
  try {
    const result = await Promise.race([begun, guard.tripped]);
    await settled();
    return result;
  } finally {
    guard.pause();
    begun.catch(() => {});
  }
}

/** Inside `begin()`, nested transactions are postgres.js savepoints: it fails a `begin()` whose statement failed unless a savepoint caught it. */
function begunQueryable(begun: TransactionSql, bounds: Bounds, guard: ReturnType<typeof watchdog>): Queryable {
  return {
    query: <R extends object>(text: string, params: readonly unknown[] = []) => run<R>(begun, text, params, bounds),
    exec: (script: string) => runScript(begun, script, bounds),
    transaction: async <R>(nested: (tx: Queryable) => Promise<R>) => {
      guard.arm();
      try {
        return await normalized(
          async () =>
            (await begun.savepoint(async (inner) => {
              guard.pause();
              try {
                return await nested(begunQueryable(inner, bounds, guard));
              } finally {
                guard.arm();
              }
            })) as R,
        );
      } finally {
        guard.pause();
      }
    },
  };
}

/** The session settings every connection starts with: the server cancels what outlasts them. */
function sessionSettings({ statementMs, roundTripMs }: DatabaseLimits): Record<string, string> {
  const settings: Record<string, string> = {};
  if (statementMs > 0) {
    settings.statement_timeout = String(statementMs);
    settings.lock_timeout = String(statementMs);
  }
  // A transaction whose client sent nothing for a whole round-trip limit was abandoned (the client
  // discarded a connection it could not hear): its locks go with it.
  if (roundTripMs > 0) settings.idle_in_transaction_session_timeout = String(roundTripMs);
  return settings;
}

/** postgres.js: Node, Deno, and Workers through Hyperdrive. */
export function createPostgresDatabase(url: string, options: PostgresOptions = {}): Database {
  const { max = 10, prepare = true, fetchTypes = true, limits = NO_LIMITS } = options;
  const common = {
    onnotice: () => {},
    keep_alive: KEEP_ALIVE_SECONDS,
    ...(limits.roundTripMs > 0 ? { connect_timeout: Math.ceil(limits.roundTripMs / 1000) } : {}),
    connection: sessionSettings(limits),
  };
  const open = () =>
    postgres(url, {
      ...common,
      max,
      prepare,
      fetch_types: fetchTypes,
      types: { int8: int8AsNumber },
    }) as unknown as Sql;
  let sql = open();
  let closed = false;
  const retiring = new Set<Promise<void>>();
  const listeners = new Set<() => Promise<void>>();

  /**
   * postgres.js 3.4.9 keeps stale state on a connection whose socket failed (porsager/postgres#1130):
   * a query sent to it before it notices the close never settles, and later queries on it can be handed
   * another query's result; and a connection that silently stopped carrying bytes is never noticed.
   * So after a connection failure or a round trip without answer, new queries go to a fresh client, and
   * the old one finishes what it can and is destroyed after 5 s (which rejects anything stuck on it).
   */
  const retire = (used: Sql) => {
    if (used !== sql || closed) return;
    sql = open();
    const ending = used.end({ timeout: 5 }).finally(() => retiring.delete(ending));
    retiring.add(ending);
  };

  const onCurrentClient = <T>(roundTripMs: number, run: (client: Sql, bounds: Bounds) => Promise<T>): Promise<T> => {
    const used = sql;
    const bounds: Bounds = { roundTripMs, prepare, dead: () => retire(used) };
    return run(used, bounds).catch((error: unknown) => {
      if (error instanceof DatabaseUnavailableError) retire(used);
      throw error;
    });
  };

  const maintenanceLimits = (tx: Queryable) =>
    tx.query("SELECT set_config('statement_timeout', $1, true), set_config('lock_timeout', '0', true)", [
      String(limits.maintenanceMs),
    ]);
  // Maintenance statements may run up to maintenanceMs on the server; the client waits a little longer.
  const maintenanceRoundTripMs = limits.maintenanceMs > 0 ? limits.maintenanceMs + 5_000 : 0;

  const db: Database = {
    kind: "postgres",
    concurrent: true,
    query: <T extends object = Row>(text: string, params?: readonly unknown[]) =>
      onCurrentClient(limits.roundTripMs, (client, bounds) => queryable(client, bounds).query<T>(text, params)),
    exec: (script) => onCurrentClient(limits.roundTripMs, (client, bounds) => queryable(client, bounds).exec(script)),
    transaction: <T>(fn: (tx: Queryable) => Promise<T>) =>
      onCurrentClient(limits.roundTripMs, (client, bounds) => transaction(client, bounds, fn)),
    maintenance: <T>(fn: (tx: Queryable) => Promise<T>) =>
      onCurrentClient(maintenanceRoundTripMs, (client, bounds) => transaction(client, bounds, fn, maintenanceLimits)),
    listen: async (channel, onPayload, onListen) => {
      const unlisten = await listenBounded(
        () => postgres(url, { ...common, max: 1, fetch_types: false }) as unknown as Sql,
        {
          channel,
          onPayload,
          onListen,
          probe: (probeChannel, nonce) => db.query("SELECT pg_notify($1, $2)", [probeChannel, nonce]),
          probeMs: LISTEN_PROBE_MS,
          roundTripMs: limits.roundTripMs,
        },
      );
      const stop = () => {
        listeners.delete(stop);
        return unlisten();
      };
      listeners.add(stop);
      return stop;
    },
    close: async () => {
      closed = true;
      await Promise.all([sql.end({ timeout: 5 }), ...retiring, ...[...listeners].map((stop) => stop())]);
    },
  };
  return db;
}

interface ListenOptions {
  channel: string;
  onPayload: (payload: string) => void;
  onListen?: () => void;
  /** Sends `nonce` on `channel` through another connection. */
  probe: (channel: string, nonce: string) => Promise<unknown>;
  probeMs: number;
  roundTripMs: number;
}

/**
 * LISTEN on a client of its own. postgres.js re-listens when that connection closes, but not when it
 * silently stops carrying bytes (a failover, a NAT that dropped its state): so every `probeMs` the
 * listener notifies itself through the query client, and when the previous probe went out but never
 * came back, the listening client is replaced (and `onListen` runs: notifications may have been missed).
 */
async function listenBounded(open: () => Sql, options: ListenOptions): Promise<() => Promise<void>> {
  const { channel, onPayload, onListen, probe, probeMs, roundTripMs } = options;
  const probeChannel = `${channel}_probe_${crypto.randomUUID().replace(/-/g, "").slice(0, 12)}`;
  let listener = open();
  let stopped = false;
  let awaited: string | undefined;

  const subscribe = (client: Sql) =>
    withinRoundTrip(
      normalized(async () => {
        await client.listen(channel, onPayload, onListen);
        await client.listen(probeChannel, (nonce) => {
          if (nonce === awaited) awaited = undefined;
        });
      }),
      roundTripMs,
    );
  try {
    await subscribe(listener);
  } catch (error) {
    await listener.end({ timeout: 0 });
    throw error;
  }

  const check = async () => {
    if (awaited !== undefined) {
      awaited = undefined;
      const dead = listener;
      listener = open();
      void dead.end({ timeout: 0 }).catch(() => {});
      // Fails while the database is unreachable; the next probe tries again.
      await subscribe(listener).catch(() => {});
      return;
    }
    const nonce = crypto.randomUUID();
    awaited = nonce;
    // A probe that cannot be sent says nothing about the listener.
    await probe(probeChannel, nonce).catch(() => {
      if (awaited === nonce) awaited = undefined;
    });
  };
  let checking = false;
  const timer = setInterval(() => {
    if (checking || stopped) return;
    checking = true;
    void check().finally(() => (checking = false));
  }, probeMs);
  (timer as { unref?: () => void }).unref?.();

  return async () => {
    stopped = true;
    clearInterval(timer);
    await listener.end({ timeout: 5 });
  };
}
