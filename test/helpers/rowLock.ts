import type { Queryable } from "../../src/db/driver.js";

export interface HeldLock<Row> {
  /** Resolves once the rows are locked, with what the locking statement returned. */
  held: Promise<Row[]>;
  /** Ends the holding transaction (commits it: a SELECT ... FOR UPDATE wrote nothing). */
  release(): void;
  /** Resolves once the holding transaction has ended. */
  done: Promise<void>;
}

/**
 * Runs `sql` (a `SELECT ... FOR UPDATE`) in a transaction of its own and keeps its row locks until
 * `release()`: for tests that make another statement wait on a row.
 *
 * @example
 * const lock = holdRowLock(db, "SELECT ctid::text FROM conversations WHERE id = $1 FOR UPDATE", [convoId]);
 * const [{ ctid }] = await lock.held;
 * lock.release();
 * await lock.done;
 */
export function holdRowLock<Row extends object = Record<string, unknown>>(
  db: Queryable,
  sql: string,
  params: unknown[] = [],
): HeldLock<Row> {
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  let locked!: (rows: Row[]) => void;
  const held = new Promise<Row[]>((resolve) => (locked = resolve));
  const done = db.transaction(async (tx) => {
    locked(await tx.query<Row>(sql, params));
    await released;
  });
  return { held, release, done };
}

/** A conversation row held by `holdConversationRow`, with its ctid. */
export type HeldConversation = HeldLock<{ ctid: string }> & { ctid: string };

/** Holds `convoId`'s conversation row (FOR UPDATE) until released, once it is held: with the row's ctid. */
export async function holdConversationRow(db: Queryable, convoId: string): Promise<HeldConversation> {
  const holder = holdRowLock<{ ctid: string }>(db, `SELECT ctid::text FROM conversations WHERE id = $1 FOR UPDATE`, [
    convoId,
  ]);
  const [row] = await holder.held;
  return { ...holder, ctid: row!.ctid };
}

/**
 * Resolves once `count` transactions wait for the lock on the conversation row at `ctid` (as
 * `SELECT ctid::text` gives it), seen in pg_locks; throws after about 20 s.
 */
export const conversationLockWaiters = (db: Queryable, ctid: string, count = 1) =>
  rowLockWaiters(db, "conversations", ctid, count, "the conversation");

/** As conversationLockWaiters, for the `devices` row at `ctid`. */
export const deviceLockWaiters = (db: Queryable, ctid: string, count = 1) =>
  rowLockWaiters(db, "devices", ctid, count, "the device");

async function rowLockWaiters(db: Queryable, table: string, ctid: string, count: number, what: string): Promise<void> {
  const [page, tuple] = ctid.slice(1, -1).split(",").map(Number);
  for (let tries = 0; tries < 1000; tries++) {
    const [row] = await db.query<{ n: number }>(
      `SELECT count(*) AS n FROM pg_locks
        WHERE locktype = 'tuple' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND relation = $1::regclass AND page = $2 AND tuple = $3`,
      [table, page, tuple],
    );
    if (Number(row!.n) >= count) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`never saw ${count} waiters on ${what}`);
}

/**
 * Runs `test` while `convos`' conversation rows are held (FOR UPDATE), in that order; each is released after it,
 * whatever happened (a test may release one earlier itself).
 *
 * @example
 * await whileRowsHeld(db, [convoId], async ([holder]) => { ...; holder.release(); ... });
 */
export async function whileRowsHeld<T extends string[]>(
  db: Queryable,
  convos: [...T],
  test: (holders: { [K in keyof T]: HeldConversation }) => Promise<void>,
): Promise<void> {
  const holders: HeldConversation[] = [];
  try {
    for (const convo of convos) holders.push(await holdConversationRow(db, convo));
    await test(holders as { [K in keyof T]: HeldConversation });
  } finally {
    for (const holder of holders) holder.release();
    await Promise.all(holders.map((holder) => holder.done));
  }
}
