/**
 * The real server as a child process: the Node entry (src/entry/node.ts) on a free port against this run's
 * database. Each child is its own process group, so kill -9 takes everything it started with it; every child
 * still running when the test process exits is killed too.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { inject } from "vitest";
import { TEST_SECRET } from "../helpers/context.js";
import { freePort } from "../setup/postgres.js";

export interface BattleServer {
  url: string;
  port: number;
  pid: number;
  /** SIGTERM (graceful shutdown), then SIGKILL if it has not exited after 5 s. */
  stop(): Promise<void>;
  /** kill -9 of the whole process group; resolves once the process is gone. */
  kill9(): Promise<void>;
  /** The last lines the server printed, for failure messages. */
  output(): string;
  /** Settles when the process has exited, however it ended. */
  exited: Promise<void>;
}

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const START_TIMEOUT_MS = 30_000;
const OUTPUT_LINES = 40;

const running = new Set<ChildProcess>();
process.on("exit", () => {
  for (const child of running) killGroup(child, "SIGKILL");
});

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  try {
    process.kill(-child.pid!, signal);
  } catch {
    // already gone
  }
}

/**
 * Starts the server and resolves when it logs "listening". `env` overrides the defaults: this run's
 * database, the test token secret, no migrations (the run's database is migrated), no cleanup timer.
 */
export async function start(env: Record<string, string> = {}): Promise<BattleServer> {
  const port = env.PORT ? Number(env.PORT) : await freePort();
  const child = spawn(process.execPath, ["--import", "tsx", "src/entry/node.ts"], {
    cwd: ROOT,
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
    env: {
      PATH: process.env.PATH,
      DATABASE_URL: inject("databaseUrl"),
      DEV_JWT_SECRET: TEST_SECRET,
      HOST: "127.0.0.1",
      MIGRATE_ON_START: "false",
      CLEANUP_INTERVAL_SECONDS: "0",
      LOG_LEVEL: "info",
      // The battle tests hammer the server as few callers; they test it, not the per-caller limiter.
      RATE_LIMIT_PER_DID: "0",
      ...env,
      PORT: String(port),
    },
  });
  running.add(child);
  const exited = once(child, "exit").then(() => void running.delete(child));

  const lines: string[] = [];
  let ready: () => void;
  const listening = new Promise<void>((resolve) => (ready = resolve));
  const collect = (chunk: Buffer) => {
    for (const line of chunk.toString().split("\n").filter(Boolean)) {
      lines.push(line);
      if (lines.length > OUTPUT_LINES) lines.shift();
      if (line.includes('"message":"listening"')) ready();
    }
  };
  child.stdout!.on("data", collect);
  child.stderr!.on("data", collect);

  const output = () => lines.join("\n");
  const server: BattleServer = {
    url: `http://127.0.0.1:${port}`,
    port,
    pid: child.pid!,
    output,
    exited,
    async stop() {
      if (!running.has(child)) return;
      killGroup(child, "SIGTERM");
      const timer = setTimeout(() => killGroup(child, "SIGKILL"), 5_000);
      await exited;
      clearTimeout(timer);
    },
    async kill9() {
      if (!running.has(child)) return;
      killGroup(child, "SIGKILL");
      await exited;
    },
  };

  let timer: NodeJS.Timeout | undefined;
  const outcome = await Promise.race([
    listening.then(() => "listening" as const),
    exited.then(() => "exited" as const),
    new Promise<"timeout">((resolve) => (timer = setTimeout(() => resolve("timeout"), START_TIMEOUT_MS))),
  ]);
  clearTimeout(timer);
  if (outcome !== "listening") {
    await server.kill9();
    throw new Error(`the server did not start (${outcome}); its output:\n${output()}`);
  }
  return server;
}

/** Stops every server given, even when some of them fail to stop. */
export async function stopAll(servers: (BattleServer | undefined)[]): Promise<void> {
  await Promise.allSettled(servers.map((server) => server?.stop()));
}
