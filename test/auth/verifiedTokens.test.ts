import { describe, expect, it } from "vitest";
import { VerifiedTokens } from "../../src/auth/verifiedTokens.js";

const verified = (acceptedUntil: Date) => ({ iss: "did:plc:alice", jti: undefined, acceptedUntil });

describe("VerifiedTokens", () => {
  const now = new Date("2026-11-25T10:00:00Z");
  const later = (ms: number) => new Date(now.getTime() + ms);

  it("answers a token verified for the same method until it expires", () => {
    const cache = new VerifiedTokens();
    cache.set("blue.catbird.mls.sendMessage", "t1", verified(later(60_000)));
    expect(cache.get("blue.catbird.mls.sendMessage", "t1", later(59_999))?.iss).toBe("did:plc:alice");
    expect(cache.get("blue.catbird.mls.sendMessage", "t1", later(60_000))).toBeUndefined();
    expect(cache.get("blue.catbird.mls.sendMessage", "t1", now)).toBeUndefined();
  });

  it("never answers for another method or another token", () => {
    const cache = new VerifiedTokens();
    cache.set("blue.catbird.mls.sendMessage", "t1", verified(later(60_000)));
    expect(cache.get("blue.catbird.mls.leaveConvo", "t1", now)).toBeUndefined();
    expect(cache.get("blue.catbird.mls.sendMessage", "t2", now)).toBeUndefined();
  });

  it("drops the oldest entry past its capacity", () => {
    const cache = new VerifiedTokens({ maxEntries: 2 });
    for (const token of ["a", "b", "c"]) cache.set("m", token, verified(later(60_000)));
    expect(cache.get("m", "a", now)).toBeUndefined();
    expect(cache.get("m", "b", now)).toBeDefined();
    expect(cache.get("m", "c", now)).toBeDefined();
  });
});
