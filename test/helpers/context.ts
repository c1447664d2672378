import { SignJWT } from "jose";
import { inject } from "vitest";
import { createApp } from "../../src/app.js";
import { ManualClock, type Clock } from "../../src/clock.js";
import { loadConfig, type Env } from "../../src/config.js";
import type { AppContext } from "../../src/context.js";
import type { Database } from "../../src/db/driver.js";
import { createPostgresDatabase } from "../../src/db/postgres.js";
import { EventBus } from "../../src/events/bus.js";
import { createLogger, type Logger } from "../../src/logger.js";
import { createMetrics } from "../../src/metrics.js";

export const TEST_SECRET = "test-secret-0123456789abcdef";

/** A postgres.js database on this run's migrated real PostgreSQL. */
export function testDatabase(max = 20): Database {
  return createPostgresDatabase(inject("databaseUrl"), { max });
}

/** An app over `db` with test configuration; `env` overrides any variable; `logger` replaces the silent one. */
export function testApp(db: Database, env: Env = {}, clock: Clock = new ManualClock(), logger?: Logger) {
  const config = loadConfig({ DEV_JWT_SECRET: TEST_SECRET, LOG_LEVEL: "silent", ...env });
  logger ??= createLogger(config.LOG_LEVEL);
  const events = new EventBus({
    db,
    logger,
    pollMs: config.EVENTS_POLL_MS,
    safetyPollMs: config.EVENTS_SAFETY_POLL_MS,
  });
  const ctx: AppContext = { config, db, clock, logger, events, metrics: createMetrics() };
  return { app: createApp(ctx), ctx };
}

export async function tokenFor(did: string, { secret = TEST_SECRET, ttlSeconds = 3600 } = {}): Promise<string> {
  return new SignJWT({})
    .setProtectedHeader({ alg: "HS256" })
    .setIssuer(did)
    .setIssuedAt()
    .setExpirationTime(Math.floor(Date.now() / 1000) + ttlSeconds)
    .sign(new TextEncoder().encode(secret));
}

/** A unique suffix so tests sharing one database never touch each other's rows. */
export const unique = (prefix: string) => `${prefix}${crypto.randomUUID().replace(/-/g, "").slice(0, 8)}`;

/** A fresh DID for one test. */
export const newDid = (name: string) => unique(`did:plc:${name}`);

/** The UTF-8 bytes of a text. */
export const utf8 = (text: string): Uint8Array => new TextEncoder().encode(text);

/** Random lowercase-hex MLS group id. */
export const randomGroupId = () => crypto.randomUUID().replace(/-/g, "");
