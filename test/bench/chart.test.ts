import { describe, expect, it } from "vitest";
import { chartSvg } from "../../scripts/bench/chart.js";
import { fanoutRow } from "../../scripts/bench/fanout.js";
import type { ScenarioRow } from "../../scripts/bench/report.js";

const send: ScenarioRow = {
  scenario: "1 sendMessage, 1000 convos, keys",
  server: { rps: 1996, p50Ms: 25, p99Ms: 96 },
  baseline: { label: "pgbench same SQL (-c 16)", rps: 5807.6, p50Ms: 2.5, p99Ms: 6.9 },
  ratio: 0.34,
  ratioLabel: "of pgbench",
};
// what `--only health` gives: no scenario 1 to compare with
const ceiling: ScenarioRow = {
  scenario: "5 HTTP ceiling (/health)",
  server: { rps: 18095, p50Ms: 3, p99Ms: 9 },
  baseline: { label: "(scenario 1 not run)", rps: NaN },
  ratio: NaN,
  ratioLabel: "send / bare",
};
const memory: ScenarioRow = {
  scenario: "6 peak RSS under scenario 1 (MB)",
  server: { rps: NaN, p50Ms: NaN, p99Ms: NaN },
  baseline: { label: "target 200 MB", rps: NaN },
  ratio: 161,
  ratioLabel: "MB",
  memoryMb: { value: 161, limit: 200 },
};
// scenario 8: delivery latency next to its limit, no throughput
const fanout: ScenarioRow = fanoutRow({
  streams: 200,
  messages: 50,
  perSecond: 10,
  expected: 10_000,
  deliveries: 10_000,
  repeated: 0,
  failedSends: 0,
  deliveryP50Ms: 21,
  deliveryP99Ms: 70,
  sendP50Ms: 9,
  sendP99Ms: 24,
  countedMessages: 40,
  transactions: 160,
  transactionsPerMessage: 4,
  besidesSendsPerMessage: 3,
  runTransactions: 623,
  controlTransactions: 463,
});

/** The aria labels Vega gives each bar: "<unit>: <value>; scenario: <name>; who: <server|baseline>". */
const bars = (svg: string) =>
  [...svg.matchAll(/<path aria-label="([^"]*)" role="graphics-symbol" aria-roledescription="bar"/g)].map((m) => m[1]!);

describe("bench chart", () => {
  it("draws one bar per measured figure and none for a figure that was not measured (no NaN)", async () => {
    const svg = await chartSvg([send, ceiling, memory]);
    expect(svg).toMatch(/^<svg /);
    expect(svg).not.toMatch(/NaN|Infinity/);
    expect(bars(svg).sort()).toEqual(
      [
        "req/s: 1996; scenario: 1 sendMessage, 1000 convos, keys: 0.34 of pgbench; who: server",
        "req/s: 5807.6; scenario: 1 sendMessage, 1000 convos, keys: 0.34 of pgbench; who: baseline",
        "ms: 96; scenario: 1 sendMessage, 1000 convos, keys: 0.34 of pgbench; who: server",
        "ms: 6.9; scenario: 1 sendMessage, 1000 convos, keys: 0.34 of pgbench; who: baseline",
        "req/s: 18095; scenario: 5 HTTP ceiling (/health): - send / bare; who: server",
        "ms: 9; scenario: 5 HTTP ceiling (/health): - send / bare; who: server",
        "MB: 161; scenario: 6 peak RSS under scenario 1 (MB): 161.00 MB; who: server",
        "MB: 200; scenario: 6 peak RSS under scenario 1 (MB): 161.00 MB; who: baseline",
      ].sort(),
    );
  });

  it("draws a fan-out row's delivery p99 next to its limit, and nothing in the throughput panel", async () => {
    const svg = await chartSvg([fanout]);
    expect(svg).not.toMatch(/NaN|Infinity/);
    expect(svg).not.toContain("Throughput (req/s)");
    const scenario = "8 fan-out, 200 streams, 10 msg/s: 4.00 DB tx/msg (3.00 besides the send); 10000/10000 delivered";
    expect(bars(svg).sort()).toEqual(
      [`ms: 70; scenario: ${scenario}; who: server`, `ms: 100; scenario: ${scenario}; who: baseline`].sort(),
    );
  });

  it("leaves out a panel with no figures", async () => {
    const svg = await chartSvg([send]);
    expect(svg).toContain("Throughput (req/s)");
    expect(svg).not.toContain("Memory (MB)");
    expect(bars(svg)).toHaveLength(4);
  });
});
