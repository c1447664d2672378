import { sha256Hex } from "../bytes.js";
import type { Scope } from "../services/idempotencyKeys.js";

/**
 * The keyed requests this process committed, long after their answers left `RecentAnswers`: each one is a
 * fingerprint of (caller, method, key, body bytes) and its record's expiry, ~150 bytes, not the answer. A
 * repeat with the same bytes is then a retry of a committed request, and its answer is one indexed read of
 * its record: no parsing, no checks, no write path. Anything else (a key another instance committed, other
 * bytes) takes the general path. Bounded in entries; the oldest go first.
 */
export class KnownRequests {
  /** Fingerprint → the record's expiry in whole seconds (a small integer: no allocation per entry). */
  private readonly expiries = new Map<string, number>();

  constructor(private readonly maxEntries: number) {}

  /** Whether this request (its scope and body bytes) committed here and its record has not expired at `now`. */
  has(scope: Scope, body: string, now: Date): boolean {
    const id = fingerprint(scope, body);
    const expiry = this.expiries.get(id);
    if (expiry === undefined) return false;
    // Rounded down when kept: a record at its last second counts as gone, and takes the general path.
    if (now.getTime() < expiry * 1000) return true;
    this.expiries.delete(id);
    return false;
  }

  /** After the request's answer committed, with its record's expiry. */
  add(scope: Scope, body: string, expiresAt: Date): void {
    const id = fingerprint(scope, body);
    this.expiries.delete(id);
    this.expiries.set(id, Math.floor(expiresAt.getTime() / 1000));
    // Map keeps insertion order: the oldest entry goes first.
    if (this.expiries.size > this.maxEntries) this.expiries.delete(this.expiries.keys().next().value!);
  }
}

/** SHA-256 of the scope and the body: the whole request as far as a replay is concerned. */
const fingerprint = (scope: Scope, body: string) => sha256Hex(`${scope.join(" ")}\n${body}`);
