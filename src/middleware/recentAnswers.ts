import { BoundedCache } from "../boundedCache.js";
import type { Scope, StoredAnswer } from "../services/idempotencyKeys.js";
import type { Fingerprint } from "./requestFingerprint.js";

interface RecentAnswer extends StoredAnswer {
  /** The first request's fingerprint (scope and body bytes): a repeat with the same one is the same request. */
  fingerprint: Fingerprint;
  /** When the key's record expires: from then on the key is a new action, and the answer is no longer its. */
  expiresAt: Date;
}

/**
 * A fixed overhead per entry, on top of its strings (two bytes a character): the entry object, its fingerprint's
 * typed array, its expiry's Date and the map's slot. Measured with sends' answers (test/exactly-once/
 * recentAnswersMemory.test.ts): at 200 here the full cache held 1.31 times its budget of heap; at 600, 0.85.
 */
const ENTRY_OVERHEAD_BYTES = 600;

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
      answer.fingerprint.byteLength +
      2 * (key.length + answer.requestHash.length + answer.response.length);
    this.cache.set(key, answer, bytes);
  }
}
