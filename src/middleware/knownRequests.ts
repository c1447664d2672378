import { sha256Hex } from "../bytes.js";
import type { Scope } from "../services/idempotencyKeys.js";

/**
 * The keyed requests this process committed, long after their answers left `RecentAnswers`: each one is a
 * fingerprint of (caller, method, key, body bytes) and its record's expiry, ~120 bytes, not the answer. A
 * repeat with the same bytes is then a retry of a committed request, and its answer is one indexed read of
 * that record (the expiry, to the millisecond, tells it from a later record of the same key): no parsing, no
 * checks, no write path. Anything else (a key another instance committed, other bytes) takes the general
 * path. Bounded in entries; the oldest go first.
 */
export class KnownRequests {
  /** Fingerprint → its record's expiry, in ms since the epoch. */
  private readonly expiries = new Map<string, number>();
  /**
   * The map's keys, oldest first, kept between evictions: a Map iterator goes on past entries deleted and sees
   * entries added later, and a new one per eviction would walk every slot earlier evictions emptied (31 µs per
   * eviction at 131,072 entries, against under 1 µs).
   */
  private oldest = this.expiries.keys();

  constructor(private readonly maxEntries: number) {}

  /** The request's fingerprint: SHA-256 of its scope and its body's bytes. */
  static fingerprint(scope: Scope, body: string): string {
    return sha256Hex(`${scope.join(" ")}\n${body}`);
  }

  /** Whether any request is known: when none is, a caller need not compute a fingerprint. */
  get empty(): boolean {
    return this.expiries.size === 0;
  }

  /** The expiry of the record the request (its fingerprint) committed here, if it has not expired at `now`. */
  expiryOf(fingerprint: string, now: Date): Date | undefined {
    const expiry = this.expiries.get(fingerprint);
    if (expiry === undefined) return undefined;
    if (now.getTime() < expiry) return new Date(expiry);
    this.expiries.delete(fingerprint);
    return undefined;
  }

  /** After the request's answer committed, with its record's expiry. */
  add(fingerprint: string, expiresAt: Date): void {
    this.expiries.delete(fingerprint);
    this.expiries.set(fingerprint, expiresAt.getTime());
    if (this.expiries.size <= this.maxEntries) return;
    let next = this.oldest.next();
    if (next.done) {
      this.oldest = this.expiries.keys();
      next = this.oldest.next();
    }
    this.expiries.delete(next.value!);
  }
}
