import type { Logger } from "../logger.js";
import { DatabaseUnavailableError, normalizeError } from "./driver.js";

/**
 * postgres.js 3.4.9 can take the whole process down when the database drops a connection (found by
 * the connection-loss battle test, test/battle/connection-loss.test.ts):
 * - inside a transaction, `begin()` issues its ROLLBACK (or the handler its next statement) on the
 *   dead connection; the write runs from a setImmediate with `socket` already null and throws a
 *   TypeError no caller can catch (porsager/postgres#1208, fix unreleased);
 * - a connection that dies while it fetches array types after (re)connecting rejects a promise
 *   nobody awaits (`fetchArrayTypes`), which Node turns into an uncaught exception.
 * Neither leaves work behind: the failing query was already rejected to its caller, and the postgres
 * adapter retires the whole client on a connection failure (new work goes to a fresh client, the old
 * one is destroyed within seconds). Everything else uncaught still ends the process, as Node would.
 */
export function isPostgresWriteAfterClose(error: unknown): boolean {
  const stack = error instanceof Error ? (error.stack ?? "") : "";
  return (
    error instanceof TypeError &&
    error.message.includes("reading 'write'") &&
    /\bnextWrite\b/.test(stack) &&
    /postgres[\\/]src[\\/]connection\.js/.test(stack)
  );
}

/** Keeps a long-lived process (Node, Deno) up through those failures; logs each one. */
export function installPostgresCrashGuard(logger: Logger): void {
  const survived = (error: unknown) =>
    logger.warn("survived a postgres.js connection failure", {
      error: error instanceof Error ? `${error.name}: ${error.message}` : String(error),
    });
  const crash = (error: unknown) => {
    console.error(error);
    process.exit(1);
  };
  process.on("uncaughtException", (error) => (isPostgresWriteAfterClose(error) ? survived(error) : crash(error)));
  process.on("unhandledRejection", (reason) =>
    normalizeError(reason) instanceof DatabaseUnavailableError ? survived(reason) : crash(reason),
  );
}
