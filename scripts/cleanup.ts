/** Runs the cleanup job once against the configured database: `npm run cleanup`. */
import { loadConfig } from "../src/config.js";
import { connectDatabase } from "../src/db/connect.js";
import { runCleanup } from "../src/jobs/cleanup.js";

const config = loadConfig(process.env);
const db = await connectDatabase(config);
try {
  const result = await runCleanup(db, {
    now: new Date(),
    welcomeGraceSeconds: config.WELCOME_GRACE_SECONDS,
    welcomeTtlSeconds: config.WELCOME_TTL_SECONDS,
    retentionDays: config.RETENTION_DAYS,
    rejoinCooldownSeconds: config.REJOIN_COOLDOWN_SECONDS,
  });
  console.log(JSON.stringify(result));
} finally {
  await db.close();
}
