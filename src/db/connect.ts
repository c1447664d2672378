import type { Config } from "../config.js";
import type { Database } from "./driver.js";
import { databaseLimits } from "./limits.js";

/**
 * Picks the adapter from configuration: `DATABASE_URL` means postgres.js (or Neon with
 * `DATABASE_DRIVER=neon`); without it, embedded PGlite under `PGLITE_DIR` (":memory:" keeps it in memory).
 * Adapters load lazily so a runtime only pulls in the driver it uses. PGlite takes no time limits
 * (one connection: nothing waits for a lock, and WASM enforces no statement_timeout).
 */
export async function connectDatabase(config: Config): Promise<Database> {
  if (!config.DATABASE_URL) {
    const { createPgliteDatabase } = await import("./pglite.js");
    return createPgliteDatabase(config.PGLITE_DIR === ":memory:" ? undefined : config.PGLITE_DIR);
  }
  if (config.DATABASE_DRIVER === "neon") {
    const [{ createNeonDatabase }, { neonConfig }] = await Promise.all([
      import("./neon.js"),
      import("@neondatabase/serverless"),
    ]);
    if (typeof WebSocket === "undefined") {
      // Node 20 has no global WebSocket; `ws` fills in.
      neonConfig.webSocketConstructor = (await import("ws"))
        .WebSocket as unknown as typeof neonConfig.webSocketConstructor;
    }
    return createNeonDatabase(config.DATABASE_URL, { max: config.DATABASE_POOL_MAX, limits: databaseLimits(config) });
  }
  const { createPostgresDatabase } = await import("./postgres.js");
  return createPostgresDatabase(config.DATABASE_URL, {
    max: config.DATABASE_POOL_MAX,
    prepare: config.DATABASE_PREPARE,
    limits: databaseLimits(config),
  });
}
