import { Histogram, Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { batchFigures, describeBatches, parseBatchHistogram } from "../../scripts/bench/batches.js";

/** /metrics as prom-client writes a histogram with these cumulative bucket counts, sum and count. */
const exposition = (buckets: Record<string, number>, sum: number, count: number) =>
  [
    "# HELP http_requests_total Requests",
    'http_requests_total{method="POST"} 12',
    "# HELP send_batch_items Items stored per batch statement",
    "# TYPE send_batch_items histogram",
    ...Object.entries(buckets).map(([le, n]) => `send_batch_items_bucket{le="${le}"} ${n}`),
    `send_batch_items_sum ${sum}`,
    `send_batch_items_count ${count}`,
  ].join("\n");

describe("bench batch figures", () => {
  it("reports the batches between two scrapes: count, mean, the bucket holding p99, commits per second", () => {
    const before = parseBatchHistogram(exposition({ "1": 5, "2": 5, "4": 5, "8": 5, "+Inf": 5 }, 5, 5));
    // 100 more batches: 50 of one item, 49 of 2-4, 1 of 5-8 items; 250 items in all
    const after = parseBatchHistogram(exposition({ "1": 55, "2": 70, "4": 104, "8": 105, "+Inf": 105 }, 255, 105));
    const figures = batchFigures(before, after, 4);
    expect(figures).toEqual({ batches: 100, meanItems: 2.5, p99Items: 4, commitsPerSecond: 25 });
    expect(describeBatches(figures)).toBe("100 batches, mean 2.5 items, p99 <= 4 items, 25 commits/s");
  });

  it("says so when the server exposes no batches (no coalescer yet) or stored none in the run", () => {
    const none = parseBatchHistogram('# HELP http_requests_total Requests\nhttp_requests_total{method="GET"} 3');
    expect(none).toBeUndefined();
    expect(batchFigures(none, none, 3)).toBeNull();
    const idle = parseBatchHistogram(exposition({ "1": 2, "+Inf": 2 }, 2, 2));
    expect(batchFigures(idle, idle, 3)).toBeNull();
    expect(describeBatches(null)).toBe("no batches reported");
  });

  it("reads the histogram as prom-client exposes it, across label sets", async () => {
    const registry = new Registry();
    const histogram = new Histogram({
      name: "send_batch_items",
      help: "Items per batch statement",
      labelNames: ["kind"] as const,
      buckets: [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256],
      registers: [registry],
    });
    const before = parseBatchHistogram(await registry.metrics());
    for (const items of [1, 1, 3, 5, 12, 20]) histogram.observe({ kind: "keyed" }, items);
    for (const items of [2, 2, 7, 40]) histogram.observe({ kind: "plain" }, items);
    const figures = batchFigures(before, parseBatchHistogram(await registry.metrics()), 2);
    expect(figures).toEqual({ batches: 10, meanItems: 9.3, p99Items: 48, commitsPerSecond: 5 });
  });

  it("places a p99 past the last bound in +Inf", () => {
    const after = parseBatchHistogram(exposition({ "256": 0, "+Inf": 10 }, 5000, 10));
    expect(batchFigures(undefined, after, 1)?.p99Items).toBe(Infinity);
  });
});
