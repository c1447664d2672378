import type { Config } from "../config.js";
import type { WelcomeTimes } from "../services/welcomes.js";

/** The grace period and lifetime a welcome is judged by at `now`, from configuration. */
export const welcomeTimes = (config: Config, now: Date): WelcomeTimes => ({
  now,
  graceSeconds: config.WELCOME_GRACE_SECONDS,
  ttlSeconds: config.WELCOME_TTL_SECONDS,
});
