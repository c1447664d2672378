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

  it("drops the oldest entries past its bytes, whatever their count", () => {
    const cache = new VerifiedTokens({ maxBytes: 10_000 });
    const big = (n: number) => `${n}`.padEnd(2000, "x");
    for (let n = 0; n < 10; n++) cache.set("m", big(n), verified(later(60_000)));
    expect(cache.get("m", big(0), now)).toBeUndefined();
    expect(cache.get("m", big(9), now)).toBeDefined();
  });

  it("answers a service token only while the key that verified it is still its issuer's current key", () => {
    let current = "did:key:first";
    const cache = new VerifiedTokens({ keyIsCurrent: (iss, key) => iss === "did:plc:alice" && key === current });
    cache.set("m", "t1", { ...verified(later(60_000)), key: "did:key:first" });
    expect(cache.get("m", "t1", now)).toBeDefined();
    current = "did:key:second";
    expect(cache.get("m", "t1", now)).toBeUndefined();
    current = "did:key:first";
    expect(cache.get("m", "t1", now)).toBeUndefined(); // dropped, not merely hidden
  });

  it("drops the oldest entry past its capacity", () => {
    const cache = new VerifiedTokens({ maxEntries: 2 });
    for (const token of ["a", "b", "c"]) cache.set("m", token, verified(later(60_000)));
    expect(cache.get("m", "a", now)).toBeUndefined();
    expect(cache.get("m", "b", now)).toBeDefined();
    expect(cache.get("m", "c", now)).toBeDefined();
  });
});
