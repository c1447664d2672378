import { createApp } from "../app.js";
import { systemClock } from "../clock.js";
import { ConfigError, loadConfig } from "../config.js";
import { connectDatabase } from "../db/connect.js";
import { migrate } from "../db/migrate.js";
import { readMigrations } from "../db/migrations-fs.js";
import { EventBus } from "../events/bus.js";
import { startCleanupTimer } from "../jobs/cleanupTimer.js";
import { createLogger } from "../logger.js";
import { createMetrics } from "../metrics.js";

/** The few Deno APIs this entry uses, declared here so Node's type-check needs no Deno types. */
interface DenoRuntime {
  env: { toObject(): Record<string, string> };
  serve(
    options: { port: number; hostname: string; onListen?: (address: { port: number }) => void },
    handler: (request: Request) => Response | Promise<Response>,
  ): { shutdown(): Promise<void> };
  addSignalListener(signal: "SIGTERM" | "SIGINT", handler: () => void): void;
  exit(code: number): never;
}
const { Deno } = globalThis as unknown as { Deno: DenoRuntime };

/** How long in-flight requests may take to finish after a shutdown signal. */
const SHUTDOWN_GRACE_MS = 10_000;

/** Deno entry: configuration from the environment, migrations, then `Deno.serve`. */
async function main(): Promise<void> {
  const config = loadConfig(Deno.env.toObject());
  const logger = createLogger(config.LOG_LEVEL);
  const db = await connectDatabase(config);
  if (config.MIGRATE_ON_START) {
    const applied = await migrate(db, await readMigrations());
    if (applied.length) logger.info("migrations applied", { applied });
  }
  const events = new EventBus({
    db,
    logger,
    pollMs: config.EVENTS_POLL_MS,
    safetyPollMs: config.EVENTS_SAFETY_POLL_MS,
  });
  const ctx = { config, db, clock: systemClock, logger, events, metrics: createMetrics() };
  const app = createApp(ctx);
  const stopCleanup = startCleanupTimer(ctx);
  const server = Deno.serve(
    {
      port: config.PORT,
      hostname: config.HOST,
      onListen: ({ port }) => logger.info("listening", { url: `http://${config.HOST}:${port}`, driver: db.kind }),
    },
    (request) => app.fetch(request),
  );

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info("shutting down", { signal });
    stopCleanup();
    // Open event streams end, so shutdown() is not held up by them; clients resume from their cursor.
    void events.close();
    // shutdown() stops accepting and resolves once in-flight requests have finished.
    const drained = await Promise.race([
      server.shutdown().then(() => true),
      new Promise<false>((resolve) => setTimeout(() => resolve(false), SHUTDOWN_GRACE_MS)),
    ]);
    await db.close();
    Deno.exit(drained ? 0 : 1);
  };
  Deno.addSignalListener("SIGTERM", () => void stop("SIGTERM"));
  Deno.addSignalListener("SIGINT", () => void stop("SIGINT"));
}

main().catch((error: unknown) => {
  const message =
    error instanceof ConfigError
      ? error.message
      : error instanceof Error
        ? `${error.name}: ${error.message}`
        : String(error);
  console.error(message);
  Deno.exit(1);
});
