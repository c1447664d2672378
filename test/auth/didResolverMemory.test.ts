/**
 * The DID cache's byte budget (DID_CACHE_MAX_BYTES) bounds the heap it holds: each entry's estimate must not be below
 * what it costs, or the budget is exceeded by the difference for every entry.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import { DidResolver } from "../../src/auth/didResolver.js";
import { heapUsedAfterGc } from "../helpers/gc.js";
import { didDocument, newKeypair, plcDid } from "./identities.js";

/** The heap once the resolutions' timeout timers (10 ms here) have fired and what they held is collected. */
async function settledHeap(): Promise<number> {
  let heap = 0;
  // A collection finds a timed-out signal dead; its timer goes on the next turn, and with the next collection.
  for (let round = 0; round < 3; round++) {
    await sleep(20);
    heap = heapUsedAfterGc();
  }
  return heap;
}

describe("DID resolver cache", () => {
  it("holds no more heap than its byte budget when full of signing keys", async () => {
    const keypairs = await Promise.all([0, 1, 2, 3].map((n) => newKeypair(n % 2 ? "ES256" : "ES256K")));
    let served = 0;
    /** A PLC directory that knows every DID, each with an `#atproto` Multikey. */
    const directory: typeof fetch = async (url) => {
      const did = decodeURIComponent(new URL(String(url)).pathname.slice(1));
      return Response.json(didDocument(did, keypairs[served++ % keypairs.length]));
    };
    const budget = 1024 * 1024;
    let resolver: DidResolver | undefined = new DidResolver({
      plcUrl: "https://plc.directory",
      ttlMs: 3_600_000,
      failureTtlMs: 30_000,
      timeoutMs: 10,
      maxCacheBytes: budget,
      maxConcurrent: 32,
      maxPerHost: 4,
      allowPrivate: false,
      now: Date.now,
      fetch: directory,
    });
    // Past what fits (a key is estimated at ~500 bytes): the oldest go, and the budget's worth stays. Yielding now and
    // then, as a server does, lets the resolutions' timers fire as they fall due.
    for (let n = 1; n <= budget / 300; n++) {
      await resolver.resolve(plcDid());
      if (n % 100 === 0) await sleep(0);
    }
    const full = await settledHeap();
    // Measured against the same heap without the resolver: what resolutions leave elsewhere (Node's timer and fetch
    // bookkeeping, which grows over the first thousands) is not the cache's.
    const dropped = new WeakRef(resolver);
    resolver = undefined;
    const empty = await settledHeap();
    expect(dropped.deref()).toBeUndefined(); // or `empty` still held the cache
    expect(full - empty).toBeLessThan(budget);
  });
});
