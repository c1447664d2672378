import type { AppContext } from "../context.js";
import { runCleanup, type CleanupResult } from "./cleanup.js";

/**
 * One cleanup run with the app's settings, as every runner does it: the counts go to the log and
 * to the metrics. Failures are logged and counted, never thrown.
 */
export async function cleanupOnce({
  config,
  db,
  clock,
  logger,
  metrics,
}: AppContext): Promise<CleanupResult | undefined> {
  try {
    const result = await runCleanup(db, {
      now: clock.now(),
      welcomeGraceSeconds: config.WELCOME_GRACE_SECONDS,
      welcomeTtlSeconds: config.WELCOME_TTL_SECONDS,
      retentionDays: config.RETENTION_DAYS,
      rejoinCooldownSeconds: config.REJOIN_COOLDOWN_SECONDS,
    });
    metrics.cleanupRan(result);
    logger.info("cleanup", { ...result });
    return result;
  } catch (error) {
    metrics.cleanupRan("failed");
    logger.error("cleanup failed", { error: error instanceof Error ? error.message : String(error) });
    return undefined;
  }
}

/**
 * Runs cleanup every `CLEANUP_INTERVAL_SECONDS` in a long-lived process (Node, Deno); 0 turns it
 * off for deployments with an external scheduler. Returns a stop function.
 */
export function startCleanupTimer(ctx: AppContext): () => void {
  if (ctx.config.CLEANUP_INTERVAL_SECONDS === 0) return () => {};
  const timer = setInterval(() => void cleanupOnce(ctx), ctx.config.CLEANUP_INTERVAL_SECONDS * 1000);
  (timer as { unref?: () => void }).unref?.();
  return () => clearInterval(timer);
}
