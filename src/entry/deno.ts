import { createMetricsApp } from "../app.js";
import { loadConfig } from "../config.js";
import { createLogger } from "../logger.js";
import { startServerContext, startupFacts, startupFailure } from "./serverContext.js";

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
  const { ctx, app, stopCleanup } = await startServerContext(config, logger);
  const { db, events } = ctx;
  const server = Deno.serve(
    {
      port: config.PORT,
      hostname: config.HOST,
      onListen: ({ port }) => logger.info("listening", { url: `http://${config.HOST}:${port}`, ...startupFacts(ctx) }),
    },
    (request) => app.fetch(request),
  );
  const metricsApp = config.METRICS_PORT === undefined ? undefined : createMetricsApp(ctx);
  const metricsServer =
    metricsApp &&
    Deno.serve(
      {
        port: config.METRICS_PORT!,
        hostname: config.HOST,
        onListen: ({ port }) => logger.info("metrics listening", { url: `http://${config.HOST}:${port}/metrics` }),
      },
      (request) => metricsApp.fetch(request),
    );

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info("shutting down", { signal });
    stopCleanup();
    // Open event streams end, so shutdown() is not held up by them; clients resume from their cursor.
    void events.close();
    void metricsServer?.shutdown();
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
  console.error(startupFailure(error));
  Deno.exit(1);
});
