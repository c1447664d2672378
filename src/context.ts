import type { Guards } from "./auth/guards.js";
import type { Clock } from "./clock.js";
import type { Config } from "./config.js";
import type { Database } from "./db/driver.js";
import type { EventBus } from "./events/bus.js";
import type { Logger } from "./logger.js";
import type { Metrics } from "./metrics.js";

/** Everything a request needs, built once per process (or per Worker request) and passed in. */
export interface AppContext {
  config: Config;
  db: Database;
  clock: Clock;
  logger: Logger;
  /** Prometheus metrics: create one per process (per isolate on Workers) and share it across contexts. */
  metrics: Metrics;
  /** Wake-ups for conversation event streams. */
  events: EventBus;
  /**
   * Authentication and rate-limit state (DID keys, verified tokens, counts) that must outlive a request.
   * Each app builds its own when absent; Workers, which build an app per request, pass one per isolate.
   */
  guards?: Guards;
}
