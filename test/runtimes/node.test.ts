/** The Node entry (`src/entry/node.ts`) as a real process on postgres.js: the smoke scenario and graceful shutdown. */
import { afterAll, beforeAll, describe, it } from "vitest";
import { inject } from "vitest";
import { testDatabase } from "../helpers/context.js";
import { freePort } from "../setup/postgres.js";
import { startServer, type RunningServer } from "./server.js";
import { expectGracefulShutdown } from "./shutdown.js";
import { smokeScenario } from "./smoke.js";

const secret = crypto.randomUUID();

async function startNode(): Promise<RunningServer> {
  const port = await freePort();
  return startServer({
    command: process.execPath,
    args: ["--import", "tsx", "src/entry/node.ts"],
    env: {
      DATABASE_URL: inject("databaseUrl"),
      PORT: String(port),
      HOST: "127.0.0.1",
      DEV_JWT_SECRET: secret,
      LOG_LEVEL: "info",
      CLEANUP_INTERVAL_SECONDS: "0",
    },
    port,
  });
}

describe("Node runtime over HTTP", () => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await startNode();
  });
  afterAll(() => server?.stop());

  smokeScenario(() => ({ baseUrl: server.baseUrl, secret }));
});

describe("Node graceful shutdown", () => {
  const db = testDatabase(3);
  afterAll(() => db.close());

  it.each(["SIGTERM", "SIGINT"] as const)("on %s it finishes the request in flight and exits 0", async (signal) => {
    const server = await startNode();
    try {
      await expectGracefulShutdown(server, { baseUrl: server.baseUrl, secret }, db, signal);
    } finally {
      await server.stop();
    }
  });
});
