/** Applies pending migrations to the configured database: `npm run migrate` (the deploy step before new instances start). */
import { loadConfig } from "../src/config.js";
import { connectDatabase } from "../src/db/connect.js";
import { migrate } from "../src/db/migrate.js";
import { readMigrations } from "../src/db/migrations-fs.js";
import { migrateOptions } from "../src/entry/serverContext.js";
import { createLogger } from "../src/logger.js";

const config = loadConfig(process.env);
const db = await connectDatabase(config);
try {
  const applied = await migrate(db, await readMigrations(), migrateOptions(config, createLogger(config.LOG_LEVEL)));
  console.log(applied.length ? `applied: ${applied.join(", ")}` : "nothing to apply");
} finally {
  await db.close();
}
