import { afterAll, beforeAll, describe, inject, it } from "vitest";
import { testDatabase } from "../helpers/context.js";
import type { RunningServer } from "./server.js";
import { expectAbandonedRequestFinished, expectGracefulShutdown } from "./shutdown.js";
import { smokeScenario } from "./smoke.js";

/** The environment every runtime's server starts with: the test database, its port, the dev-token secret. */
export function runtimeEnv(port: number, secret: string): Record<string, string> {
  return {
    DATABASE_URL: inject("databaseUrl"),
    PORT: String(port),
    HOST: "127.0.0.1",
    DEV_JWT_SECRET: secret,
    LOG_LEVEL: "info",
    CLEANUP_INTERVAL_SECONDS: "0",
  };
}

/**
 * The suite every long-lived runtime passes: the smoke scenario over HTTP on one server, then a
 * graceful shutdown per signal, each on a server of its own.
 */
export function describeRuntime(
  name: string,
  start: () => Promise<RunningServer>,
  secret: string,
  signals: readonly ("SIGTERM" | "SIGINT")[],
): void {
  describe(`${name} runtime over HTTP`, () => {
    let server: RunningServer;
    beforeAll(async () => {
      server = await start();
    });
    afterAll(() => server?.stop());

    smokeScenario(() => ({ baseUrl: server.baseUrl, secret }));
  });

  describe(`${name} graceful shutdown`, () => {
    const db = testDatabase(3);
    afterAll(() => db.close());

    it.each(signals)("on %s it finishes the request in flight and exits 0", async (signal) => {
      const server = await start();
      try {
        await expectGracefulShutdown(server, { baseUrl: server.baseUrl, secret }, db, signal);
      } finally {
        await server.stop();
      }
    });

    it("finishes a request whose client went away before it closes its pool", async () => {
      const server = await start();
      try {
        await expectAbandonedRequestFinished(server, { baseUrl: server.baseUrl, secret }, db, signals[0]!);
      } finally {
        await server.stop();
      }
    });
  });
}
