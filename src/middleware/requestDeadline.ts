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
    const deadline = performance.now() + ms;
    const expired = () => performance.now() >= deadline;
    c.set("db", bounded(c.get("db"), expired));
    // For work queued on the request's behalf outside its handle (a batch of sends): none may start once it passed.
    c.set("deadlinePassed", expired);
    await next();
  };
}

/** `db`, refusing to start statements and transactions once `expired()`. */
function bounded(db: Queryable, expired: () => boolean): Queryable {
  return {
    query: (text, params) => (expired() ? Promise.reject(timedOut()) : db.query(text, params)),
    exec: (script) => (expired() ? Promise.reject(timedOut()) : db.exec(script)),
    transaction: (fn) =>
      expired()
        ? Promise.reject(timedOut())
        : db.transaction(async (tx) => {
            const result = await fn(bounded(tx, expired));
            // The callback is done; COMMIT would start now.
            if (expired()) throw timedOut();
            return result;
          }),
  };
}
