/**
 * Real server processes (src/entry/node.ts under tsx) on this run's database, for the event stream tests
 * across instances. Each is detached into its own process group, and runs as one process (`node --import tsx`):
 * tsx's own wrapper SIGKILLs a child that does not acknowledge a signal within ~60 ms, which a busy server may not.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { expect, inject } from "vitest";
import { clientFor } from "../helpers/client.js";
import { randomGroupId, tokenFor, unique } from "../helpers/context.js";
import { freePort } from "../setup/postgres.js";
import { SUITE } from "./convo.js";

export const SERVER_SECRET = "events-test-secret-0123456789";
const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const START_TIMEOUT_MS = 30_000;

export interface Server {
  url: string;
  port: number;
  /** SIGTERM to the process group; resolves with the exit code (SIGKILL after 10 s). */
  stop(): Promise<number | null>;
  /** What the server printed, for failure messages. */
  output(): string;
}

/** Starts a server and resolves once it answers /health. */
export async function startServer(env: Record<string, string> = {}, port?: number): Promise<Server> {
  const listenOn = port ?? (await freePort());
  const child: ChildProcess = spawn(process.execPath, ["--import", "tsx", "src/entry/node.ts"], {
    cwd: ROOT,
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
    env: {
      PATH: process.env.PATH,
      PORT: String(listenOn),
      HOST: "127.0.0.1",
      DATABASE_URL: inject("databaseUrl"),
      DEV_JWT_SECRET: SERVER_SECRET,
      MIGRATE_ON_START: "false",
      CLEANUP_INTERVAL_SECONDS: "0",
      LOG_LEVEL: "warn",
      ...env,
    },
  });
  let printed = "";
  const collect = (chunk: Buffer) => (printed = (printed + chunk.toString()).slice(-4000));
  child.stdout!.on("data", collect);
  child.stderr!.on("data", collect);
  const exited = once(child, "exit").then(([code]) => code as number | null);
  let running = true;
  void exited.then(() => (running = false));

  const server: Server = {
    url: `http://127.0.0.1:${listenOn}`,
    port: listenOn,
    output: () => printed,
    async stop() {
      if (running) signal(child, "SIGTERM");
      const force = setTimeout(() => signal(child, "SIGKILL"), 10_000);
      const code = await exited;
      clearTimeout(force);
      return code;
    },
  };

  const deadline = Date.now() + START_TIMEOUT_MS;
  while (!(await answers(server.url))) {
    if (!running || Date.now() > deadline) {
      await server.stop();
      throw new Error(`the server did not start; its output:\n${printed}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return server;
}

function signal(child: ChildProcess, name: NodeJS.Signals): void {
  try {
    process.kill(-child.pid!, name);
  } catch {
    // already gone
  }
}

async function answers(url: string): Promise<boolean> {
  try {
    return (await fetch(`${url}/health`)).ok;
  } catch {
    return false;
  }
}

/** The typed client (one attempt) acting as `did` on `server`, with a token the servers accept. */
export function clientOn(server: Server, did: string) {
  return clientFor(server.url, null, { token: () => tokenFor(did, { secret: SERVER_SECRET }) });
}

/** Alice's new conversation with Bob, created on `server`. */
export async function conversation(server: Server) {
  const alice = unique("did:plc:alice");
  const bob = unique("did:plc:bob");
  const created = await clientOn(server, alice).createConvo({
    groupId: randomGroupId(),
    cipherSuite: SUITE,
    initialMembers: [bob],
  });
  expect(created.status).toBe(200);
  return { alice, bob, convoId: created.data.id };
}
