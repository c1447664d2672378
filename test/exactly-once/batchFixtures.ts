/** Sends, claims and a coalescer for tests that drive group commit directly (SendCoalescer, no HTTP). */
import type { Queryable } from "../../src/db/driver.js";
import { IMPLICIT_DEVICE } from "../../src/services/actingDevice.js";
import type { KeyClaim, OnceOutcome } from "../../src/services/idempotencyKeys.js";
import type { SendMessage } from "../../src/services/messages.js";
import { SendCoalescer } from "../../src/services/sendCoalescer.js";

export const METHOD = "blue.catbird.mls.sendMessage";

/** A send of a fresh ciphertext from `sender`'s implicit device at epoch 0; `extra` overrides any field. */
export const message = (convoId: string, sender: string, extra: Partial<SendMessage> = {}): SendMessage => ({
  convoId,
  sender,
  senderDevice: IMPLICIT_DEVICE,
  epoch: 0,
  ciphertext: new TextEncoder().encode(`${sender} ${crypto.randomUUID()}`),
  messageType: "app",
  opaque: true,
  now: new Date(),
  ...extra,
});

/** `caller`'s claim of `key` for sendMessage, alive for a day. */
export const claimOf = (caller: string, key: string, requestHash = "a".repeat(64)): KeyClaim => ({
  scope: [caller, METHOD, key],
  requestHash,
  now: new Date(),
  expiresAt: new Date(Date.now() + 86_400_000),
  waitMs: 10_000,
});

/** A one-lane coalescer over `db`, recording how many sends each statement answered. */
export function coalescer(db: Queryable, maxItems = 128, maxBytes = 4 << 20, heldWaitMs = 250) {
  const sizes: number[] = [];
  const sends = new SendCoalescer({
    db,
    maxItems,
    maxBytes,
    heldWaitMs,
    lanes: 1,
    method: METHOD,
    observe: (n) => sizes.push(n),
    // No streams here: nothing to notify or wake.
    announcer: { notice: undefined, publishEvents: () => {} },
  });
  return { sends, sizes };
}

/** The seq a stored send's answer gives; undefined for any other outcome. */
export const seqOf = (outcome: OnceOutcome) =>
  outcome && "sent" in outcome ? (JSON.parse(outcome.sent) as { seq: number }).seq : undefined;
