/** What every bench server shares: its database (a throwaway one), its environment and its callers' tokens. */
import { randomUUID } from "node:crypto";
import { availableParallelism } from "node:os";
import { SignJWT } from "jose";
import type postgres from "postgres";

/** The bench servers' DEV_JWT_SECRET: tokens are made here. */
const SECRET = randomUUID();
/** The bench servers' METRICS_TOKEN: /metrics answers the bench whatever NODE_ENV says. */
export const METRICS_TOKEN = randomUUID();

/** The bench server's group-commit lanes (SEND_BATCH_LANES): batches in flight at once. */
export const LANES = 2;

/** A token the bench servers take for `did`, good for two hours. */
export async function tokenFor(did: string): Promise<string> {
  return new SignJWT({})
    .setProtectedHeader({ alg: "HS256" })
    .setIssuer(did)
    .setExpirationTime("2h")
    .sign(new TextEncoder().encode(SECRET));
}

/** A new database `<prefix>_<time>` on the server at `databaseUrl`: its name and URL. */
export async function createDatabase(admin: postgres.Sql, databaseUrl: string, prefix: string) {
  const name = `${prefix}_${Date.now().toString(36)}`;
  await admin.unsafe(`CREATE DATABASE ${name}`);
  const url = new URL(databaseUrl);
  url.pathname = `/${name}`;
  return { name, url: url.toString() };
}

/** The bench server's environment on database `url`. */
export function serverEnv(url: string): Record<string, string> {
  return {
    DATABASE_URL: url,
    DEV_JWT_SECRET: SECRET,
    METRICS_TOKEN,
    LOG_LEVEL: "error",
    CLEANUP_INTERVAL_SECONDS: "0",
    MIGRATE_ON_START: "false",
    // One "hot" caller sends as fast as it can: the bench measures the server, not the per-caller limiter.
    RATE_LIMIT_PER_DID: "0",
    // Every request comes from this one address: the per-address /xrpc limit would throttle the load.
    RATE_LIMIT_XRPC_PER_IP: "0",
    SEND_BATCH_LANES: String(LANES),
    // The usual sizing for a pool on the database's own machine, twice its cores (4 here): scenario 3 read
    // 1,690-1,950 pages/s with 4 connections against 1,270-1,590 with 8 (two runs each, alternated): fewer
    // connections pipeline more queries each, and postgres.js sends a connection's queries of one tick in one
    // write, where each write to PostgreSQL cost the server ~185 µs on these machines (profiled). Sends were the
    // same either way (two lanes of batches).
    // At least one connection more than the lanes (the server refuses fewer).
    DATABASE_POOL_MAX: process.env.BENCH_POOL_MAX ?? String(Math.max(LANES + 1, 2 * availableParallelism())),
  };
}
