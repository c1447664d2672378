import { PGlite, type Transaction } from "@electric-sql/pglite";
import { initDataDir } from "./pgliteInit.js";
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
 * Postgres's shared memory lives in the WASM heap and is zeroed when allocated, so all of it is resident
 * from the start: initdb's defaults (shared_buffers 128MB, room for 100 connections) made it a third of
 * the process's RSS. 8MB of buffers holds a development database's hot pages (a page read past them comes
 * from the OS page cache or the in-memory file system), and a single-user PGlite has one backend.
 * Given to initdb too, so the data directory's postgresql.conf says the same.
 */
const SETTINGS = ["-c", "shared_buffers=8MB", "-c", "max_connections=10"];

/**
 * Embedded Postgres in WASM: the zero-setup default. One connection, so transactions run one
 * after another; correct, but never evidence of behaviour under concurrency.
 * `dataDir` undefined keeps everything in memory (tests). No time limits: a statement never waits for
 * a lock here, and statement_timeout is not enforced in WASM (no timer signals).
 */
export async function createPgliteDatabase(dataDir?: string): Promise<Database> {
  const options = { startParams: [...PGlite.defaultStartParams, ...SETTINGS], initDbStartParams: SETTINGS };
  if (dataDir) await initDataDir(dataDir, options);
  const db = await PGlite.create(dataDir, { ...options, parsers: { 20: (value: string) => Number(value) } });
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
