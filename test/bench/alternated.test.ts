import { describe, expect, it } from "vitest";
import { alternated, describeAlternated } from "../../scripts/bench/alternated.js";
import type { LoadResult } from "../../scripts/bench/load.js";
import type { PgbenchResult } from "../../scripts/bench/pgbench.js";

const serverRun = (rps: number, p99Ms: number, non2xx = 0): LoadResult => ({
  requestsPerSecond: rps,
  requests: rps * 15,
  p50Ms: p99Ms / 2,
  p99Ms,
  non2xx,
  errors: 0,
});
const pgbenchRun = (tps: number): PgbenchResult => ({ clients: 16, tps, p50Ms: 1, p99Ms: 5 });

describe("a scenario and its baseline by turns", () => {
  it("runs them alternately and keeps each side's median run, with its own latencies", async () => {
    const order: string[] = [];
    const servers = [serverRun(2500, 40), serverRun(3100, 60, 2)];
    const baselines = [pgbenchRun(4000), pgbenchRun(2600)];
    const result = await alternated({ server: serverRun(2800, 45), baseline: pgbenchRun(3300) }, 2, {
      server: async () => (order.push("server"), servers.shift()!),
      baseline: async () => (order.push("pgbench"), baselines.shift()!),
    });
    expect(order).toEqual(["server", "pgbench", "server", "pgbench"]);
    expect(result.server).toEqual(serverRun(2800, 45));
    expect(result.baseline.tps).toBe(3300);
    expect(result.serverRps).toEqual([2800, 2500, 3100]);
    expect(result.baselineTps).toEqual([3300, 4000, 2600]);
    expect(result.failures).toBe(2);
    expect(describeAlternated(result)).toBe(
      "server 2800, 2500, 3100 req/s; pgbench -c 16 3300, 4000, 2600 tps; medians' ratio 0.85",
    );
  });

  it("with no turns, is the first pair as it is", async () => {
    const never = async (): Promise<never> => {
      throw new Error("no turn should run");
    };
    const result = await alternated({ server: serverRun(2000, 30), baseline: pgbenchRun(2500) }, 0, {
      server: never,
      baseline: never,
    });
    expect(result.server.requestsPerSecond).toBe(2000);
    expect(result.baseline.tps).toBe(2500);
  });
});
