import { BoundedCache } from "../boundedCache.js";
import type { Scope, StoredAnswer } from "../services/idempotencyKeys.js";

interface RecentAnswer extends StoredAnswer {
  /** SHA-256 of the first request's body bytes: a repeat with the same bytes is the same request. */
  bodyHash: string;
  /** When the key's record expires: from then on the key is a new action, and the answer is no longer its. */
  expiresAt: Date;
}

/** A fixed overhead per entry, on top of its strings (two bytes a character). */
const ENTRY_OVERHEAD_BYTES = 200;

/**
 * The answers this process committed for idempotency keys, so a repeat is answered without the database.
 * A committed record never changes until it expires (then it is taken over or removed), so an answer kept
 * here until its record's expiry is the one the database would replay; every other repeat (a key another
 * instance answered, one this process has forgotten) reads the database as before. Bounded in bytes.
 */
export class RecentAnswers {
  private readonly cache: BoundedCache<RecentAnswer>;

  constructor(maxBytes: number) {
    this.cache = new BoundedCache({ maxBytes });
  }

  get(scope: Scope, now: Date): RecentAnswer | undefined {
    const key = scope.join(" ");
    const answer = this.cache.get(key);
    if (answer && now < answer.expiresAt) return answer;
    if (answer) this.cache.delete(key);
    return undefined;
  }

  /** After the answer committed. */
  set(scope: Scope, answer: RecentAnswer): void {
    const key = scope.join(" ");
    const bytes =
      ENTRY_OVERHEAD_BYTES +
      2 * (key.length + answer.requestHash.length + answer.bodyHash.length + answer.response.length);
    this.cache.set(key, answer, bytes);
  }
}
