import { BoundedCache } from "../boundedCache.js";
import type { VerifiedToken } from "./verifyServiceToken.js";

export interface VerifiedTokensOptions {
  maxEntries?: number;
  /** What the entries may hold: their keys (method and token) and issuers, plus a fixed overhead each. */
  maxBytes?: number;
  /** Whether the issuer key a token was verified with is still the issuer's current one. */
  keyIsCurrent?: (iss: string, key: string) => boolean;
}

/**
 * A fixed overhead per entry, on top of its strings (two bytes a character): the entry object, its expiry's Date, the
 * cache's record and the map's slot. Tokens, DIDs and keys are ASCII, one byte a character, which leaves room for the
 * rest (the `jti`, the pieces a `did:key` is built from). Measured (test/auth/verifiedTokensMemory.test.ts): the full
 * cache holds 0.84 of its budget of heap with ES256K service tokens, 0.87 with HS256 development tokens.
 */
const ENTRY_OVERHEAD_BYTES = 200;

/**
 * Tokens already verified, per method (a service token's `lxm` binds it to one), until they expire
 * or the issuer key that verified them is no longer the current one (rotated, or past the resolver's
 * TTL). A client sends the same token with many requests; checking a signature again costs more than
 * the rest of a send. Replayed `jti`s are still refused: that check runs on every request. Bounded
 * in entries and in bytes; past either, the oldest entries go.
 */
export class VerifiedTokens {
  private readonly entries: BoundedCache<VerifiedToken>;
  private readonly keyIsCurrent: (iss: string, key: string) => boolean;

  constructor({
    maxEntries = 10_000,
    maxBytes = 8 * 1024 * 1024,
    keyIsCurrent = () => true,
  }: VerifiedTokensOptions = {}) {
    this.entries = new BoundedCache({ maxEntries, maxBytes });
    this.keyIsCurrent = keyIsCurrent;
  }

  get(method: string, token: string, now: Date): VerifiedToken | undefined {
    const key = `${method} ${token}`;
    const verified = this.entries.get(key);
    if (!verified) return undefined;
    if (now < verified.acceptedUntil && (verified.key === undefined || this.keyIsCurrent(verified.iss, verified.key))) {
      return verified;
    }
    this.entries.delete(key);
    return undefined;
  }

  set(method: string, token: string, verified: VerifiedToken): void {
    const key = `${method} ${token}`;
    const bytes = ENTRY_OVERHEAD_BYTES + 2 * (key.length + verified.iss.length + (verified.key?.length ?? 0));
    this.entries.set(key, verified, bytes);
  }
}
