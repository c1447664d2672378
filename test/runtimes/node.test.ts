/** The Node entry (`src/entry/node.ts`) as a real process on postgres.js: the smoke scenario and graceful shutdown. */
import { inject } from "vitest";
import { freePort } from "../setup/postgres.js";
import { startServer, type RunningServer } from "./server.js";
import { describeRuntime } from "./runtimeSuite.js";

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

describeRuntime("Node", startNode, secret, ["SIGTERM", "SIGINT"]);
