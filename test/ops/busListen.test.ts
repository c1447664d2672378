/** The event bus's LISTEN watchdog when the very first LISTEN fails: it tries again instead of polling for good. */
import { afterAll, describe, expect, it } from "vitest";
import type { Database } from "../../src/db/driver.js";
import { EventBus } from "../../src/events/bus.js";
import { createLogger } from "../../src/logger.js";
import { testDatabase } from "../helpers/context.js";

const db = testDatabase(2);
afterAll(() => db.close());

/** The real database, whose first LISTEN fails (the database restarting as the first stream opens). */
function failingFirstListen(real: Database): Database & { listenCalls: number } {
  const wrapped = Object.create(real) as Database & { listenCalls: number };
  wrapped.listenCalls = 0;
  wrapped.listen = async (channel, onPayload, onListen) => {
    if (++wrapped.listenCalls === 1) throw new Error("connection refused");
    return real.listen!(channel, onPayload, onListen);
  };
  return wrapped;
}

describe("EventBus LISTEN", () => {
  it("retries a failed first LISTEN and then runs on it (safety polling), not on fast polling for good", async () => {
    const flaky = failingFirstListen(db);
    const bus = new EventBus({ db: flaky, logger: createLogger("silent"), pollMs: 1000, safetyPollMs: 100 });
    const unsubscribe = bus.subscribe("convo-listen-retry", () => {});
    try {
      for (let waited = 0; waited < 15_000 && bus.pollMs !== 100; waited += 50) {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      expect(flaky.listenCalls).toBeGreaterThanOrEqual(2);
      expect(bus.pollMs).toBe(100);
    } finally {
      unsubscribe();
      await bus.close();
    }
  });
});
