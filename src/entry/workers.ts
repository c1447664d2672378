import { createApp } from "../app.js";
import { createGuards, type Guards } from "../auth/guards.js";
import { systemClock } from "../clock.js";
import { ConfigError, loadConfig, type Config } from "../config.js";
import type { AppContext } from "../context.js";
import type { Database } from "../db/driver.js";
import { databaseLimits } from "../db/limits.js";
import { createNeonDatabase } from "../db/neon.js";
import { createPostgresDatabase } from "../db/postgres.js";
import { EventBus } from "../events/bus.js";
import { runCleanup } from "../jobs/cleanup.js";
import { createLogger } from "../logger.js";
import { createMetrics } from "../metrics.js";

/** Bindings from wrangler.toml: `HYPERDRIVE`, plus `[vars]` and secrets, which are all strings. */
export interface Env {
  HYPERDRIVE?: Hyperdrive;
  [name: string]: unknown;
}

/**
 * The configuration from vars and secrets. With the postgres driver the database URL is the
 * Hyperdrive binding's (or a `DATABASE_URL` secret without one); with `DATABASE_DRIVER=neon` it is
 * the `DATABASE_URL` secret.
 */
function workerConfig(env: Env): Config {
  const vars = Object.fromEntries(
    Object.entries(env).filter((entry): entry is [string, string] => typeof entry[1] === "string"),
  );
  const url =
    vars.DATABASE_DRIVER === "neon" ? vars.DATABASE_URL : (env.HYPERDRIVE?.connectionString ?? vars.DATABASE_URL);
  // An app per request: known requests would be a table allocated per request and never consulted.
  const config = loadConfig({ IDEMPOTENCY_KNOWN_REQUESTS: "0", ...vars, DATABASE_URL: url });
  if (!config.DATABASE_URL) {
    throw new ConfigError("invalid configuration: bind HYPERDRIVE, or set DATABASE_URL with DATABASE_DRIVER=neon");
  }
  return config;
}

/**
 * One client per invocation: a Worker may not reuse a socket across requests. Built here rather
 * than through `db/connect.ts`, which can also load PGlite, a driver a Worker never uses.
 */
function openDatabase(config: Config): Database {
  const url = config.DATABASE_URL!;
  const limits = databaseLimits(config);
  if (config.DATABASE_DRIVER === "neon") return createNeonDatabase(url, { max: config.DATABASE_POOL_MAX, limits });
  return createPostgresDatabase(url, {
    max: config.DATABASE_POOL_MAX,
    prepare: config.DATABASE_PREPARE,
    fetchTypes: false,
    limits,
  });
}

/** One set of metrics per isolate, shared by every request's context: /metrics shows this isolate's counts. */
const metrics = createMetrics();
/**
 * Rate-limit counts, verified tokens and DID keys per isolate, built with its first request's
 * configuration (an isolate's bindings do not change): a guard rebuilt per request would forget
 * everything it counted and cached.
 */
let guards: Guards | undefined;

function context(env: Env): AppContext {
  const config = workerConfig(env);
  const db = openDatabase(config);
  const logger = createLogger(config.LOG_LEVEL);
  // No connection outlives the invocation, so no LISTEN: streams poll.
  const events = new EventBus({
    db,
    logger,
    pollMs: config.EVENTS_POLL_MS,
    safetyPollMs: config.EVENTS_SAFETY_POLL_MS,
    listen: false,
  });
  guards ??= createGuards(config, systemClock);
  return { config, db, clock: systemClock, logger, events, metrics, guards };
}

/** A bad configuration is the operator's fault: say so in the log, never in the response. */
function misconfigured(error: ConfigError): Response {
  console.error(JSON.stringify({ time: new Date().toISOString(), level: "error", message: error.message }));
  return Response.json({ error: "InternalServerError", message: "the server is misconfigured" }, { status: 500 });
}

/**
 * Closes the request's client once the response body has gone out (or the client went away), not
 * when the handler returns: a streamed body (streamConvoEvents) keeps reading the database meanwhile.
 */
function closeWhenSent(response: Response, db: Database, ctx: ExecutionContext): Response {
  if (!response.body) {
    ctx.waitUntil(db.close());
    return response;
  }
  const { readable, writable } = new TransformStream();
  ctx.waitUntil(
    response.body
      .pipeTo(writable)
      .catch(() => {}) // the client disconnected: nothing left to send
      .finally(() => db.close()),
  );
  return new Response(readable, response);
}

/** Cloudflare Workers entry: the same app per request, and cleanup from cron triggers. */
export default {
  async fetch(request, env, ctx) {
    let app: AppContext;
    try {
      app = context(env);
    } catch (error) {
      if (error instanceof ConfigError) return misconfigured(error);
      throw error;
    }
    let response: Response;
    try {
      response = await createApp(app).fetch(request, env, ctx);
    } catch (error) {
      ctx.waitUntil(app.db.close());
      throw error;
    }
    return closeWhenSent(response, app.db, ctx);
  },

  // Every cron in wrangler.toml runs the same cleanup: it removes whatever is past its time.
  async scheduled(controller, env, ctx) {
    const { config, db, logger } = context(env);
    try {
      const result = await runCleanup(db, {
        now: new Date(controller.scheduledTime),
        welcomeGraceSeconds: config.WELCOME_GRACE_SECONDS,
        welcomeTtlSeconds: config.WELCOME_TTL_SECONDS,
        retentionDays: config.RETENTION_DAYS,
        rejoinCooldownSeconds: config.REJOIN_COOLDOWN_SECONDS,
      });
      metrics.cleanupRan(result);
      logger.info("cleanup", { cron: controller.cron, ...result });
    } finally {
      ctx.waitUntil(db.close());
    }
  },
} satisfies ExportedHandler<Env>;
