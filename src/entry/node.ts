import { serve } from "@hono/node-server";
import type { Server } from "node:http";
import { createMetricsApp } from "../app.js";
import { loadConfig } from "../config.js";
import { installPostgresCrashGuard } from "../db/postgresCrashGuard.js";
import { batchedStdout, createLogger } from "../logger.js";
import { answerAfterReads } from "./answerAfterReads.js";
import { devSecret } from "./dev-secret.js";
import { RequestsInFlight } from "./requestsInFlight.js";
import { startServerContext, startupFacts, startupFailure } from "./serverContext.js";

/** Node entry: configuration from the environment, migrations, then serve. */
async function main(): Promise<void> {
  const config = loadConfig({ ...process.env, DEV_JWT_SECRET: await devSecret(process.env) });
  const logger = createLogger(config.LOG_LEVEL, batchedStdout());
  installPostgresCrashGuard(logger);
  const { ctx, app, stopCleanup } = await startServerContext(config, logger);
  const { db, events } = ctx;
  const inFlight = new RequestsInFlight();
  // Plain HTTP/1.1: `serve` makes an http.Server unless given another createServer. Its timeouts are
  // checked every second (Node's default: every 30 s), so a slow client is cut off close to on time.
  const server = serve(
    {
      fetch: answerAfterReads(inFlight.track(app.fetch)),
      port: config.PORT,
      hostname: config.HOST,
      serverOptions: {
        headersTimeout: config.SERVER_HEADERS_TIMEOUT_MS,
        requestTimeout: Math.max(config.SERVER_REQUEST_TIMEOUT_MS, config.SERVER_HEADERS_TIMEOUT_MS),
        connectionsCheckingInterval: 1000,
      },
    },
    (info) => logger.info("listening", { url: `http://${config.HOST}:${info.port}`, ...startupFacts(ctx) }),
  ) as Server;
  // Connections past the cap are closed as they arrive: each open one costs memory, even idle.
  server.maxConnections = config.SERVER_MAX_CONNECTIONS;
  server.keepAliveTimeout = config.SERVER_KEEPALIVE_TIMEOUT_MS;
  const metricsServer =
    config.METRICS_PORT === undefined
      ? undefined
      : (serve({ fetch: createMetricsApp(ctx).fetch, port: config.METRICS_PORT, hostname: config.HOST }, (info) =>
          logger.info("metrics listening", { url: `http://${config.HOST}:${info.port}/metrics` }),
        ) as Server);

  let stopping = false;
  // close() ends idle keep-alive connections only; one busy when shutdown began would keep taking
  // new requests until it idled out. So while stopping, each finished response closes its connection.
  server.on("request", (_request, response) =>
    response.once("finish", () => stopping && setImmediate(() => server.closeIdleConnections())),
  );
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info("shutting down", { signal });
    stopCleanup();
    // Open event streams end, so the server can close; clients resume from their cursor elsewhere.
    const streamsEnded = events.close();
    metricsServer?.close();
    const force = setTimeout(() => process.exit(1), 10_000);
    force.unref();
    server.close(async () => {
      // Requests whose clients left are not connections any more, but still use the pool; so do event streams
      // (their bodies read after their request's fetch returned) until they end.
      await Promise.all([inFlight.settled(), streamsEnded]);
      await db.close();
      logger.info("stopped");
      process.exit(0);
    });
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
}

main().catch((error: unknown) => {
  console.error(startupFailure(error));
  process.exit(1);
});
