/** Applies pending migrations to the configured database: `npm run migrate`. */
import { loadConfig } from "../src/config.js";
import { connectDatabase } from "../src/db/connect.js";
import { migrate } from "../src/db/migrate.js";
import { readMigrations } from "../src/db/migrations-fs.js";

const config = loadConfig(process.env);
const db = await connectDatabase(config);
try {
  const applied = await migrate(db, await readMigrations());
  console.log(applied.length ? `applied: ${applied.join(", ")}` : "nothing to apply");
} finally {
  await db.close();
}
