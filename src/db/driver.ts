/**
 * The one interface the app speaks to Postgres through. Three adapters implement it
 * (postgres.js, Neon's Pool, PGlite); services never see which one is underneath.
 */
export type Row = Record<string, unknown>;

export interface Queryable {
  /** Runs one parameterised statement ($1, $2, ...) and returns its rows. */
  query<T extends object = Row>(text: string, params?: readonly unknown[]): Promise<T[]>;
  /** Runs a script of several statements without parameters (migrations). */
  exec(script: string): Promise<void>;
  /**
   * Runs `fn` in a transaction that commits when it resolves and rolls back when it throws.
   * A statement `fn` started and did not wait for is settled before the commit (postgres.js sends it
   * in the same round trip as COMMIT); if it failed, so does the transaction.
   * Called on a transaction handle it opens a savepoint, so a nested failure undoes only its own writes.
   */
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
}

export type DriverKind = "postgres" | "neon" | "pglite";

/**
 * How long the database may take, so that no wait is unbounded (0 turns a bound off).
 * Requests' statements get `statementMs` as statement_timeout and lock_timeout, set per connection
 * (no round trip): a statement cancelled by them has rolled back. `roundTripMs`, longer, bounds each
 * round trip on the client: past it the connection is presumed dead and discarded (a silent network
 * failure). Maintenance transactions (migrations, cleanup) get `maintenanceMs` for both instead.
 */
export interface DatabaseLimits {
  statementMs: number;
  roundTripMs: number;
  maintenanceMs: number;
}

export const NO_LIMITS: DatabaseLimits = { statementMs: 0, roundTripMs: 0, maintenanceMs: 0 };

export interface Database extends Queryable {
  readonly kind: DriverKind;
  /** True when the database can run transactions concurrently (false for single-connection PGlite). */
  readonly concurrent: boolean;
  /**
   * A transaction for work outside requests (migrations, cleanup): the request-sized limits do not
   * apply, `maintenanceMs` does; it may set tighter ones itself (SET LOCAL).
   */
  maintenance<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  /**
   * Postgres LISTEN, where the adapter keeps a connection for it (postgres.js): `onPayload` gets each
   * notification on `channel`, `onListen` runs each time listening (re)starts, when some may have been
   * missed. Resolves once listening, with the function that stops it.
   */
  listen?(channel: string, onPayload: (payload: string) => void, onListen?: () => void): Promise<() => Promise<void>>;
  close(): Promise<void>;
}

/** A database error with its SQLSTATE code, whatever the adapter. */
export class DatabaseError extends Error {
  constructor(
    message: string,
    readonly code: string | undefined,
    readonly constraint: string | undefined,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "DatabaseError";
  }
}

/** SQLSTATE 23505: the backstop for everything that must exist once. */
export class UniqueViolationError extends DatabaseError {
  constructor(message: string, constraint: string | undefined, options?: { cause?: unknown }) {
    super(message, "23505", constraint, options);
    this.name = "UniqueViolationError";
  }
}

/** The database could not be reached or dropped the connection: callers should answer 503. */
export class DatabaseUnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "DatabaseUnavailableError";
  }
}

const CONNECTION_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENETDOWN",
  "EAI_AGAIN",
  "EPIPE",
  "ETIMEDOUT",
  "ENOTFOUND",
  "CONNECTION_CLOSED",
  "CONNECTION_ENDED",
  "CONNECTION_DESTROYED",
  "CONNECT_TIMEOUT",
  "57P01", // admin_shutdown (pg_terminate_backend)
  "57P02",
  "57P03", // cannot_connect_now
  "53300", // too_many_connections: every slot taken (pools of all instances beyond max_connections)
  "08000",
  "08003",
  "08006",
  "08001",
  "08004",
]);

/** Connection failures that carry no code: pg's (inside Neon's driver), and Neon's Pool used after `end()`. */
const CONNECTION_MESSAGES =
  /connection (terminated|closed|ended)|socket hang up|Client has encountered a connection error|after calling end on the pool/i;

/** No answer within the round-trip limit: the connection is presumed dead (a silent network failure). */
export const noAnswer = (ms: number) => new DatabaseUnavailableError(`no answer from the database within ${ms} ms`);

/**
 * `work`, or a rejection with `noAnswer` once `ms` have passed (0: no bound); `onTimeout` runs first.
 * The work's own late outcome is consumed.
 */
export function withinRoundTrip<T>(work: Promise<T>, ms: number, onTimeout?: () => void): Promise<T> {
  if (ms <= 0) return work;
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      onTimeout?.();
      reject(noAnswer(ms));
    }, ms);
    work.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}

/** SQLSTATE classes 00 to 72, F0, HV, P0, XX. */
const SQLSTATE = /^(?:[0-9][0-9A-Z]|F0|HV|P0|XX)[0-9A-Z]{3}$/;

/**
 * Whether `code` is a SQLSTATE: the server's own error for the statement, which it rolled back. Any other code
 * (the client's or the socket's) leaves open whether a statement sent took effect.
 */
export const isSqlState = (code: string | undefined): boolean => code !== undefined && SQLSTATE.test(code);

/** The database refused to wait for a lock any longer (the statement's lock_timeout ran out): SQLSTATE 55P03. */
export const isLockTimeout = (error: unknown): boolean => error instanceof DatabaseError && error.code === "55P03";

/** Deadlock (40P01) or serialization failure (40001): this transaction was rolled back so that another could go on. */
export const isTransactionConflict = (error: unknown): boolean =>
  error instanceof DatabaseError && (error.code === "40P01" || error.code === "40001");

/** Turns whatever a driver threw into the typed errors above. */
export function normalizeError(error: unknown): Error {
  if (error instanceof DatabaseError || error instanceof DatabaseUnavailableError) return error;
  const e = error as { code?: unknown; message?: unknown; constraint?: unknown; constraint_name?: unknown };
  const code = typeof e?.code === "string" ? e.code : undefined;
  const message = typeof e?.message === "string" ? e.message : String(error);
  if (code && CONNECTION_CODES.has(code)) return new DatabaseUnavailableError(message, { cause: error });
  // A server error (a SQLSTATE) may echo client text in its message: only code-less errors are read by message.
  if (!isSqlState(code) && CONNECTION_MESSAGES.test(message)) {
    return new DatabaseUnavailableError(message, { cause: error });
  }
  const constraint =
    typeof e?.constraint === "string"
      ? e.constraint
      : typeof e?.constraint_name === "string"
        ? e.constraint_name
        : undefined;
  if (code === "23505") return new UniqueViolationError(message, constraint, { cause: error });
  if (code) return new DatabaseError(message, code, constraint, { cause: error });
  return error instanceof Error ? error : new Error(message);
}

/** Runs a driver call and rethrows its failure as a typed error. */
export async function normalized<T>(run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    throw normalizeError(error);
  }
}

let savepointCounter = 0;

/** Nested transaction by SAVEPOINT, for adapters whose client has no savepoint helper. */
export async function withSavepoint<T>(tx: Queryable, fn: (tx: Queryable) => Promise<T>): Promise<T> {
  const name = `sp_${++savepointCounter}`;
  await tx.query(`SAVEPOINT ${name}`);
  try {
    const result = await fn(tx);
    await tx.query(`RELEASE SAVEPOINT ${name}`);
    return result;
  } catch (error) {
    await tx.query(`ROLLBACK TO SAVEPOINT ${name}`);
    throw error;
  }
}

/**
 * The handle a transaction's `fn` gets: it remembers the statements started on it so the adapter
 * can settle them at commit. A failed statement aborts the transaction in Postgres, so `settled`
 * rethrows it even if `fn` caught it: COMMIT would silently roll back otherwise.
 * Statements inside a nested transaction (savepoint) are the savepoint's business and not tracked.
 */
export function trackStatements(tx: Queryable): { tx: Queryable; settled(): Promise<void> } {
  const started: Promise<unknown>[] = [];
  const tracked: Queryable = {
    query: <T extends object = Row>(text: string, params?: readonly unknown[]) => {
      const statement = tx.query<T>(text, params);
      statement.catch(() => {});
      started.push(statement);
      return statement;
    },
    exec: (script) => tx.exec(script),
    transaction: (fn) => tx.transaction(fn),
  };
  return {
    tx: tracked,
    settled: async () => {
      for (const outcome of await Promise.allSettled(started)) {
        if (outcome.status === "rejected") throw outcome.reason;
      }
    },
  };
}
