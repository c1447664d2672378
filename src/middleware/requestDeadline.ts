import type { MiddlewareHandler } from "hono";
import type { Queryable } from "../db/driver.js";
import { XrpcError } from "../errors.js";

export interface RequestDeadlineOptions {
  /** REQUEST_TIMEOUT_MS: from then on the request starts no database statement. */
  ms: number;
}

/** Thrown instead of starting a statement after the deadline; its transaction rolls back. */
const timedOut = () =>
  new XrpcError(503, "NotReady", "the request timed out before it could finish; nothing was stored, retry shortly", {
    "Retry-After": "1",
  });

/**
 * The request timeout, answered truthfully. Once `ms` have passed, the request starts no database
 * statement (nor COMMIT of a transaction still running its callback): its next one throws and its
 * transaction rolls back, so "503, retry" is then true. A statement already sent finishes under the
 * database's own statement timeout (kept below `ms` by the configuration), and the answer waits for it:
 * a write whose COMMIT went out before the deadline answers what it did, not "retry".
 *
 * Hono's `timeout` answers at `ms` while the handler runs on, and a write could commit after its 503.
 *
 * @example
 * app.use(requestDeadline({ ms: 30_000 }))
 */
export function requestDeadline({ ms }: RequestDeadlineOptions): MiddlewareHandler {
  return async function requestDeadline(c, next) {
    const at = performance.now() + ms;
    const passed = () => performance.now() >= at;
    c.set("db", new DeadlineBound(c.get("db"), passed));
    // For work queued on the request's behalf outside its handle (a batch of sends): none may start once it passed.
    c.set("deadlinePassed", passed);
    await next();
  };
}

/** `db`, refusing to start statements and transactions once the deadline passed. A class: every request makes one. */
class DeadlineBound implements Queryable {
  constructor(
    private readonly db: Queryable,
    private readonly passed: () => boolean,
  ) {}

  query<T extends object>(text: string, params?: readonly unknown[]): Promise<T[]> {
    return this.passed() ? Promise.reject(timedOut()) : this.db.query<T>(text, params);
  }

  exec(script: string): Promise<void> {
    return this.passed() ? Promise.reject(timedOut()) : this.db.exec(script);
  }

  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
    if (this.passed()) return Promise.reject(timedOut());
    return this.db.transaction(async (tx) => {
      const result = await fn(new DeadlineBound(tx, this.passed));
      // The callback is done; COMMIT would start now.
      if (this.passed()) throw timedOut();
      return result;
    });
  }
}
