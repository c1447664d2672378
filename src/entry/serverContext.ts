import type { Hono } from "hono";
import { createApp } from "../app.js";
import { createGuards } from "../auth/guards.js";
import { createUnpooledFetch } from "../auth/unpooledFetch.js";
import { systemClock } from "../clock.js";
import { authMode, ConfigError, type Config } from "../config.js";
import type { AppContext } from "../context.js";
import { connectDatabase } from "../db/connect.js";
import { migrate, type MigrateOptions } from "../db/migrate.js";
import { readMigrations } from "../db/migrations-fs.js";
import { EventBus } from "../events/bus.js";
import { startCleanupTimer } from "../jobs/cleanupTimer.js";
import type { Logger } from "../logger.js";
import { createMetrics } from "../metrics.js";

export interface ServerContext {
  ctx: AppContext;
  app: Hono;
  stopCleanup: () => void;
}

/**
 * What a long-lived server process (Node, Deno) builds before it serves: the database (migrated
 * unless told not to), the event bus, metrics, the app and the cleanup timer.
 */
export async function startServerContext(config: Config, logger: Logger): Promise<ServerContext> {
  const db = await connectDatabase(config);
  if (config.MIGRATE_ON_START) {
    const applied = await migrate(db, await readMigrations(), migrateOptions(config, logger));
    if (applied.length) logger.info("migrations applied", { applied });
  }
  const events = new EventBus({
    db,
    logger,
    pollMs: config.EVENTS_POLL_MS,
    safetyPollMs: config.EVENTS_SAFETY_POLL_MS,
  });
  // Node's fetch keeps a connection pool per origin forever (one per did:web host a token names); Deno's does not.
  const plcHost = new URL(config.PLC_DIRECTORY_URL).hostname;
  const fetch = createUnpooledFetch({ privateAllowed: (host) => config.DID_WEB_ALLOW_PRIVATE || host === plcHost });
  const guards = createGuards(config, systemClock, "Deno" in globalThis ? {} : { fetch });
  const ctx: AppContext = { config, db, clock: systemClock, logger, events, metrics: createMetrics(), guards };
  return { ctx, app: createApp(ctx), stopCleanup: startCleanupTimer(ctx) };
}

/** What the "listening" line says about how this instance runs: database driver and which tokens it accepts. */
export function startupFacts({ config, db }: AppContext): Record<string, string> {
  return { driver: db.kind, auth: authMode(config), environment: config.NODE_ENV ?? "development" };
}

/** The migration runner's lock timeout and retries from the configuration, retries logged. */
export function migrateOptions(config: Config, logger: Logger): MigrateOptions {
  return {
    lockTimeoutMs: config.MIGRATE_LOCK_TIMEOUT_MS,
    attempts: config.MIGRATE_ATTEMPTS,
    onRetry: (attempt) => logger.warn("migration waited too long for a table lock; retrying", { attempt }),
  };
}

/** The one line a process prints when it cannot start. */
export function startupFailure(error: unknown): string {
  if (error instanceof ConfigError) return error.message;
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}
