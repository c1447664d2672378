/** The event bus's LISTEN on real Postgres: it recovers from a LISTEN that failed at the first stream. */
import { afterAll, describe, expect, it, vi } from "vitest";
import type { Database } from "../../src/db/driver.js";
import { EventBus } from "../../src/events/bus.js";
import { createLogger } from "../../src/logger.js";
import { testDatabase, unique } from "../helpers/context.js";

const db = testDatabase();
afterAll(() => db.close());
const logger = createLogger("silent");
const NEVER = 600_000;

/** `db` whose first `failures` LISTENs fail. */
function flakyListen(inner: Database, failures: number): Database {
  return {
    kind: inner.kind,
    concurrent: inner.concurrent,
    close: () => inner.close(),
    exec: (script) => inner.exec(script),
    query: (text, params) => inner.query(text, params),
    transaction: (fn) => inner.transaction(fn),
    maintenance: (fn) => inner.maintenance(fn),
    listen: (channel, onPayload, onListen) =>
      failures-- > 0 ? Promise.reject(new Error("LISTEN refused")) : inner.listen!(channel, onPayload, onListen),
  };
}

describe("EventBus", () => {
  it("retries LISTEN after the first one failed, and then hears other instances' wake-ups", async () => {
    const safetyPollMs = 50;
    const bus = new EventBus({ db: flakyListen(db, 1), logger, pollMs: NEVER, safetyPollMs });
    const other = new EventBus({ db, logger, pollMs: NEVER, safetyPollMs: NEVER });
    const convoId = unique("convo-");
    let woken = 0;
    const unsubscribe = bus.subscribe(convoId, () => woken++);
    try {
      // While LISTEN is down streams poll at pollMs; once it works again, at safetyPollMs.
      expect(bus.pollMs).toBe(NEVER);
      await vi.waitFor(() => expect(bus.pollMs).toBe(safetyPollMs), { timeout: 10_000, interval: 20 });
      woken = 0;
      other.publish(convoId);
      await vi.waitFor(() => expect(woken).toBeGreaterThan(0), { timeout: 10_000, interval: 20 });
    } finally {
      unsubscribe();
      await Promise.all([bus.close(), other.close()]);
    }
  });
});
