import { describe, expect, it } from "vitest";
import { BoundedCache } from "../src/boundedCache.js";
import { heapUsedAfterGc } from "./helpers/gc.js";

const heapMb = () => heapUsedAfterGc() / 2 ** 20;

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

  it("still drops the oldest first after many evictions, deletions and touches", () => {
    const cache = new BoundedCache<number>({ maxEntries: 3, maxBytes: 1_000 });
    for (let n = 0; n < 1000; n++) cache.set(`k${n}`, n, 1);
    cache.delete("k998");
    cache.touch("k997");
    cache.set("x", 0, 1);
    cache.set("y", 0, 1);
    expect(["k997", "k998", "k999", "x", "y"].filter((key) => cache.get(key) !== undefined)).toEqual([
      "k997",
      "x",
      "y",
    ]);
    // An entry larger than the bound is not kept, and takes nothing else with it beyond what it must.
    cache.set("huge", 0, 2_000);
    expect(["k997", "x", "y", "huge"].map((key) => cache.get(key))).toEqual([
      undefined,
      undefined,
      undefined,
      undefined,
    ]);
    cache.set("z", 1, 1);
    expect(cache.get("z")).toBe(1);
  });

  it("holds no more memory after millions of touches and replacements under its bounds", () => {
    // The DID cache's life: every hit touches, and it rarely fills. Its eviction iterator, left still, kept every
    // table the map was rebuilt into since (~85 MB per million touches here).
    const cache = new BoundedCache<{ key: string }>({ maxBytes: 8 << 20 });
    for (let n = 0; n < 1000; n++) cache.set(`did:plc:${n}`, { key: `k${n}` }, 300);
    const before = heapMb();
    for (let round = 0; round < 2000; round++) {
      for (let n = 0; n < 1000; n++) cache.touch(`did:plc:${n}`);
      cache.set(`did:plc:${round % 1000}`, { key: `r${round}` }, 300);
    }
    expect(heapMb() - before).toBeLessThan(16);
    expect(cache.get("did:plc:7")).toEqual({ key: "r1007" });
  });
});
