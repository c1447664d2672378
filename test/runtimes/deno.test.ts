/** The Deno entry (`src/entry/deno.ts`, `Deno.serve`) as a real process on postgres.js: the smoke scenario and graceful shutdown. */
import { join } from "node:path";
import { afterAll, beforeAll, describe, inject, it } from "vitest";
import { testDatabase } from "../helpers/context.js";
import { freePort } from "../setup/postgres.js";
import { ROOT, startServer, type RunningServer } from "./server.js";
import { expectGracefulShutdown } from "./shutdown.js";
import { smokeScenario } from "./smoke.js";

const secret = crypto.randomUUID();

/** The binary from the `deno` npm package; deno.json sets nodeModulesDir and sloppy imports. */
async function startDeno(): Promise<RunningServer> {
  const port = await freePort();
  return startServer({
    command: join(ROOT, "node_modules/.bin/deno"),
    args: ["run", "--allow-net", "--allow-env", "--allow-read", "src/entry/deno.ts"],
    env: {
      DATABASE_URL: inject("databaseUrl"),
      PORT: String(port),
      HOST: "127.0.0.1",
      DEV_JWT_SECRET: secret,
      LOG_LEVEL: "info",
      CLEANUP_INTERVAL_SECONDS: "0",
      DENO_NO_UPDATE_CHECK: "1",
      DENO_NO_PROMPT: "1",
    },
    port,
  });
}

describe("Deno runtime over HTTP", () => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await startDeno();
  });
  afterAll(() => server?.stop());

  smokeScenario(() => ({ baseUrl: server.baseUrl, secret }));
});

describe("Deno graceful shutdown", () => {
  const db = testDatabase(3);
  afterAll(() => db.close());

  it("on SIGTERM it finishes the request in flight and exits 0", async () => {
    const server = await startDeno();
    try {
      await expectGracefulShutdown(server, { baseUrl: server.baseUrl, secret }, db, "SIGTERM");
    } finally {
      await server.stop();
    }
  });
});
