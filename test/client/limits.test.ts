/**
 * Timers within what setTimeout takes (a longer delay would fire at once), large bytes decoded in linear time,
 * and nothing left on a long-lived caller signal after its calls.
 */
import { getEventListeners } from "node:events";
import { describe, expect, it, vi } from "vitest";
import { createClient } from "mls-delivery-service/client";
import { sleep } from "../../src/client/retry.js";
import { fromWire } from "../../src/client/wire.js";
import { within } from "../helpers/within.js";

const ok = () => Response.json({ conversations: [] });

describe("timers", () => {
  it("refuses a deadline setTimeout cannot hold", async () => {
    for (const deadlineMs of [2 ** 31, Number.POSITIVE_INFINITY, Number.NaN, 0, -1]) {
      const client = createClient({ service: "http://mls.invalid", fetch: ok, retry: { deadlineMs } });
      await expect(client.getConvos({})).rejects.toBeInstanceOf(RangeError);
    }
  });

  it("a sleep longer than setTimeout takes does not end at once", async () => {
    const stop = new AbortController();
    setTimeout(() => stop.abort(new Error("stopped")), 100);
    await expect(within(sleep(2 ** 32, stop.signal), 2_000)).rejects.toThrow("stopped");
  });

  it("a Retry-After past the deadline makes the failure final at once", async () => {
    let requests = 0;
    const client = createClient({
      service: "http://mls.invalid",
      retry: { deadlineMs: 2 ** 31 - 1 },
      fetch: () => {
        requests++;
        return Response.json({ error: "RateLimitExceeded" }, { status: 429, headers: { "Retry-After": "3000000" } });
      },
    });
    const began = Date.now();
    await expect(within(client.getConvos({}), 2_000)).rejects.toMatchObject({ status: 429 });
    expect([requests, Date.now() - began < 1_000]).toEqual([1, true]);
  });
});

it("decodes 8 MiB of bytes", () => {
  const bytes = new Uint8Array(8 * 1024 * 1024).map((_, i) => i * 7);
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  const wire = { $bytes: btoa(binary) };
  // (Its speed, an indexed loop instead of Uint8Array.from with a map function, some twenty times faster, is not
  // a pass/fail matter.)
  const decoded = fromWire(wire);
  // Compared by hand: toEqual on 8 MiB takes a minute.
  expect(decoded).toBeInstanceOf(Uint8Array);
  expect((decoded as Uint8Array).every((byte, i) => byte === bytes[i]) && (decoded as Uint8Array).length).toBe(
    bytes.length,
  );
});

describe("a long-lived caller signal", () => {
  it("keeps no listener and no combined signal of past calls", async () => {
    const any = vi.spyOn(AbortSignal, "any");
    const app = new AbortController();
    const client = createClient({ service: "http://mls.invalid", fetch: ok });
    for (let i = 0; i < 100; i++) await client.getConvos({}, { signal: app.signal });
    // AbortSignal.any keeps each combined signal in the source's dependents until a GC (Node retains them longer).
    expect(any).not.toHaveBeenCalled();
    expect(getEventListeners(app.signal, "abort")).toHaveLength(0);
    any.mockRestore();
  });
});
