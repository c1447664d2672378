import { PGlite, type Transaction } from "@electric-sql/pglite";
import { normalized, trackStatements, withSavepoint, type Database, type Queryable, type Row } from "./driver.js";

function transactionQueryable(tx: Transaction): Queryable {
  const self: Queryable = {
    query: async <T extends object>(text: string, params: readonly unknown[] = []) =>
      normalized(async () => (await tx.query<T>(text, params as unknown[])).rows),
    exec: (script) => normalized(async () => void (await tx.exec(script))),
    transaction: (fn) => withSavepoint(self, fn),
  };
  return self;
}

/**
 * Embedded Postgres in WASM: the zero-setup default. One connection, so transactions run one
 * after another; correct, but never evidence of behaviour under concurrency.
 * `dataDir` undefined keeps everything in memory (tests). No time limits: a statement never waits for
 * a lock here, and statement_timeout is not enforced in WASM (no timer signals).
 */
export async function createPgliteDatabase(dataDir?: string): Promise<Database> {
  const db = await PGlite.create(dataDir, { parsers: { 20: (value: string) => Number(value) } });
  const transaction = <T>(fn: (tx: Queryable) => Promise<T>) =>
    normalized(() =>
      db.transaction(async (pgliteTx) => {
        const { tx, settled } = trackStatements(transactionQueryable(pgliteTx));
        const result = await fn(tx);
        await settled();
        return result;
      }),
    );
  return {
    kind: "pglite",
    concurrent: false,
    query: async <T extends object>(text: string, params: readonly unknown[] = []) =>
      normalized(async () => (await db.query<T>(text, params as unknown[])).rows),
    exec: (script) => normalized(async () => void (await db.exec(script))),
    transaction,
    maintenance: transaction,
    close: () => db.close(),
  };
}
