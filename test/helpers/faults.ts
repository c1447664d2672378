import type { Database, Queryable } from "../../src/db/driver.js";

/**
 * The real database with a hook run before each statement (on the pool and inside transactions):
 * lets a test make one statement fail or stall while everything else stays real.
 */
export function withStatementHook(db: Database, hook: (sql: string) => Promise<void>): Database {
  const wrap = (inner: Queryable): Queryable => ({
    query: async (text, params) => {
      await hook(text);
      return inner.query(text, params);
    },
    exec: (script) => inner.exec(script),
    transaction: (fn) => inner.transaction((tx) => fn(wrap(tx))),
  });
  return {
    kind: db.kind,
    concurrent: db.concurrent,
    close: () => db.close(),
    maintenance: (fn) => db.maintenance((tx) => fn(wrap(tx))),
    ...wrap(db),
  };
}

/**
 * The real database (LISTEN included) with `see` called for each statement run on the pool; statements inside
 * transactions are not seen.
 */
export function watchingPool(db: Database, see: (sql: string) => void): Database {
  return {
    kind: db.kind,
    concurrent: db.concurrent,
    close: () => db.close(),
    exec: (script) => db.exec(script),
    query(text, params) {
      see(text);
      return db.query(text, params);
    },
    transaction: (fn) => db.transaction(fn),
    maintenance: (fn) => db.maintenance(fn),
    listen: db.listen?.bind(db),
  };
}
