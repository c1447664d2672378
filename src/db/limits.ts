import type { Config } from "../config.js";
import type { DatabaseLimits } from "./driver.js";

/**
 * The database limits for a configuration. Statements end (cancelled, rolled back) before the
 * request times out, so a timeout's "retry" is true; the client-side round-trip limit sits between
 * the two, so a dead connection answers 503 before the request times out too.
 */
export function databaseLimits(config: Config): DatabaseLimits {
  const request = config.REQUEST_TIMEOUT_MS;
  const statementMs = config.DB_STATEMENT_TIMEOUT_MS ?? request - Math.min(5_000, Math.floor(request / 4));
  const roundTripMs =
    config.DB_ROUND_TRIP_TIMEOUT_MS ?? statementMs + Math.max(1, Math.floor((request - statementMs) / 2));
  return { statementMs, roundTripMs, maintenanceMs: config.DB_MAINTENANCE_TIMEOUT_MS };
}

/**
 * The longest one wait of a statement of held sends for their conversation's row lasts (SendLane): another
 * instance's batch holding it commits within milliseconds, so 250 ms, and at most half a statement's time, so the
 * wait ends (55P03: the lane waits again) before the statement times out (57014: its sends would fail).
 */
export const heldSendWaitMs = (config: Config): number =>
  // At least 25 ms from a valid configuration (DB_STATEMENT_TIMEOUT_MS >= 50); never 0, which is no limit at all.
  Math.max(1, Math.min(250, Math.floor(databaseLimits(config).statementMs / 2)));
