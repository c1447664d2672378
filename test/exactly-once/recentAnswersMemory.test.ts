/**
 * The recent answers' byte budget (IDEMPOTENCY_RECENT_BYTES) bounds the heap they hold: each entry's estimate must
 * not be below what it costs, or the budget is exceeded by the difference for every entry.
 */
import { describe, expect, it } from "vitest";
import { RecentAnswers } from "../../src/middleware/recentAnswers.js";
import { requestFingerprint } from "../../src/middleware/requestFingerprint.js";
import type { Scope } from "../../src/services/idempotencyKeys.js";
import { heapUsedAfterGc } from "../helpers/gc.js";

/** A send's answer as the idempotency middleware keeps it (sizes as the server's: UUIDs, a hex hash, ISO time). */
function sendAnswer(n: number) {
  const scope: Scope = [`did:plc:sender${n % 1000}`, "blue.catbird.mls.sendMessage", crypto.randomUUID()];
  const response = JSON.stringify({
    messageId: crypto.randomUUID(),
    seq: n,
    epoch: 0,
    receivedAt: new Date().toISOString(),
  });
  const requestHash = Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("hex");
  const fingerprint = requestFingerprint(scope, `{"convoId":"c${n}","ciphertext":{"$bytes":"${"A".repeat(216)}"}}`);
  return {
    scope,
    answer: { requestHash, statusCode: 200, response, fingerprint, expiresAt: new Date(Date.now() + 86_400_000) },
  };
}

describe("recent answers", () => {
  it("hold no more heap than their byte budget when full", () => {
    const budget = 4 * 1024 * 1024;
    const before = heapUsedAfterGc();
    const recent = new RecentAnswers(budget);
    // Several times what fits (an answer is estimated at ~1,150 bytes): the oldest go, and the budget's worth stays.
    for (let n = 0; n < 4 * (budget / 500); n++) {
      const { scope, answer } = sendAnswer(n);
      recent.set(scope, answer);
    }
    expect(heapUsedAfterGc() - before).toBeLessThan(budget);
    // Still referenced here, so the collections above could not free it.
    expect(recent.get(["did:plc:nobody", "blue.catbird.mls.sendMessage", "none"], new Date())).toBeUndefined();
  });
});
