/** The Node entry (`src/entry/node.ts`) as a real process on postgres.js: the smoke scenario and graceful shutdown. */
import { freePort } from "../setup/postgres.js";
import { startServer, type RunningServer } from "./server.js";
import { describeRuntime, runtimeEnv } from "./runtimeSuite.js";

const secret = crypto.randomUUID();

async function startNode(): Promise<RunningServer> {
  const port = await freePort();
  return startServer({
    command: process.execPath,
    args: ["--import", "tsx", "src/entry/node.ts"],
    env: runtimeEnv(port, secret),
    port,
  });
}

describeRuntime("Node", startNode, secret, ["SIGTERM", "SIGINT"]);
