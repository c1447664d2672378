/** The Deno entry (`src/entry/deno.ts`, `Deno.serve`) as a real process on postgres.js: the smoke scenario and graceful shutdown. */
import { join } from "node:path";
import { freePort } from "../setup/postgres.js";
import { ROOT, startServer, type RunningServer } from "./server.js";
import { describeRuntime, runtimeEnv } from "./runtimeSuite.js";

const secret = crypto.randomUUID();

/** The binary from the `deno` npm package; deno.json sets nodeModulesDir and sloppy imports. */
async function startDeno(): Promise<RunningServer> {
  const port = await freePort();
  return startServer({
    command: join(ROOT, "node_modules/.bin/deno"),
    args: ["run", "--allow-net", "--allow-env", "--allow-read", "src/entry/deno.ts"],
    env: {
      ...runtimeEnv(port, secret),
      DENO_NO_UPDATE_CHECK: "1",
      DENO_NO_PROMPT: "1",
    },
    port,
  });
}

describeRuntime("Deno", startDeno, secret, ["SIGTERM"]);
