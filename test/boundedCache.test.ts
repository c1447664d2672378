import { describe, expect, it } from "vitest";
import { BoundedCache } from "../src/boundedCache.js";

describe("BoundedCache", () => {
  it("drops the oldest entries past its entry bound", () => {
    const cache = new BoundedCache<number>({ maxEntries: 2, maxBytes: 1_000 });
    cache.set("a", 1, 10);
    cache.set("b", 2, 10);
    cache.set("c", 3, 10);
    expect([cache.get("a"), cache.get("b"), cache.get("c")]).toEqual([undefined, 2, 3]);
  });

  it("drops the oldest entries past its byte bound, and a replaced entry counts once", () => {
    const cache = new BoundedCache<number>({ maxEntries: 100, maxBytes: 100 });
    cache.set("a", 1, 40);
    cache.set("b", 2, 40);
    cache.set("b", 3, 40);
    expect(cache.get("a")).toBe(1);
    cache.set("c", 4, 40);
    expect([cache.get("a"), cache.get("b"), cache.get("c")]).toEqual([undefined, 3, 4]);
  });

  it("keeps a touched entry longest, and needs no entry bound", () => {
    const cache = new BoundedCache<number>({ maxBytes: 100 });
    cache.set("a", 1, 40);
    cache.set("b", 2, 40);
    cache.touch("a");
    cache.set("c", 3, 40);
    expect([cache.get("a"), cache.get("b"), cache.get("c")]).toEqual([1, undefined, 3]);
  });
});
