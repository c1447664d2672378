import type { AppContext } from "../context.js";
import { runCleanup } from "./cleanup.js";

/**
 * Runs cleanup every `CLEANUP_INTERVAL_SECONDS` in a long-lived process (Node, Deno); 0 turns it
 * off for deployments with an external scheduler. Failures are logged, never thrown. Returns a stop function.
 */
export function startCleanupTimer({ config, db, clock, logger }: AppContext): () => void {
  if (config.CLEANUP_INTERVAL_SECONDS === 0) return () => {};
  const tick = async () => {
    try {
      const result = await runCleanup(db, {
        now: clock.now(),
        welcomeGraceSeconds: config.WELCOME_GRACE_SECONDS,
        retentionDays: config.RETENTION_DAYS,
      });
      logger.info("cleanup", { ...result });
    } catch (error) {
      logger.error("cleanup failed", { error: error instanceof Error ? error.message : String(error) });
    }
  };
  const timer = setInterval(tick, config.CLEANUP_INTERVAL_SECONDS * 1000);
  (timer as { unref?: () => void }).unref?.();
  return () => clearInterval(timer);
}
