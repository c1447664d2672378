import type { VerifiedToken } from "./verifyServiceToken.js";

/**
 * Tokens already verified, per method (a service token's `lxm` binds it to one), until they expire.
 * A client sends the same token with many requests; checking a signature again costs more than the
 * rest of a send. Replayed `jti`s are still refused: that check runs on every request.
 */
export class VerifiedTokens {
  private readonly entries = new Map<string, VerifiedToken>();

  constructor(private readonly capacity = 10_000) {}

  get(method: string, token: string, now: Date): VerifiedToken | undefined {
    const key = `${method} ${token}`;
    const verified = this.entries.get(key);
    if (verified && now < verified.acceptedUntil) return verified;
    if (verified) this.entries.delete(key);
    return undefined;
  }

  set(method: string, token: string, verified: VerifiedToken): void {
    // Map keeps insertion order: past capacity, the oldest entry goes.
    if (this.entries.size >= this.capacity) this.entries.delete(this.entries.keys().next().value!);
    this.entries.set(`${method} ${token}`, verified);
  }
}
