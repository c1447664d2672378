/**
 * 4: idempotent replays. Of scenario 1's keys: in a full run scenario 2's sends have pushed them out of the
 * server's recent answers (IDEMPOTENCY_RECENT_BYTES) by then, so the database answers most. 4b: of scenario 2's
 * newest keys, which the server answers from memory, as it does a client's quick retry. Each row says which it was
 * (from the server's idempotency_replays_total by source).
 */
import { cpuUsPerRequest, load, type LoadResult } from "./load.js";
import { scrapeMetrics } from "./metrics.js";
import type { ScenarioRow } from "./report.js";
import { sendRequests, type SendPlan } from "./requests.js";
import type { BenchServer } from "./server.js";

/** 4b's keys: the newest of scenario 2, within what the recent answers hold (about 7,000 sends' worth). */
const RECENT_KEYS = 5_000;
/** A send run: its plan (to rebuild its requests) and what it did. */
export interface SendRun {
  plan: SendPlan;
  result: LoadResult;
}

/** idempotency_replays_total by `from` (memory, key, database), from the server's /metrics (`token`: its METRICS_TOKEN). */
async function replaysBySource(url: string, token: string): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const { name, labels, value } of await scrapeMetrics(url, token)) {
    if (name === "idempotency_replays_total" && labels.from) counts[labels.from] = (counts[labels.from] ?? 0) + value;
  }
  return counts;
}

/** "N% from memory, M% read by key": where the replays of a run were read (the rest: the general path). */
function sourceShare(before: Record<string, number>, after: Record<string, number>): string {
  const delta = (from: string) => (after[from] ?? 0) - (before[from] ?? 0);
  const [memory, key] = [delta("memory"), delta("key")];
  const share = (count: number) => ((100 * count) / Math.max(1, memory + key + delta("database"))).toFixed(0);
  return `${share(memory)}% from memory, ${share(key)}% read by key`;
}

interface ReplayTarget {
  server: BenchServer;
  /** Connections, as the send runs had: as many of their last requests may have been in flight, never stored. */
  connections: number;
  seconds: number;
  /** The server's METRICS_TOKEN. */
  token: string;
}

export async function replayScenarios(
  { server, connections, seconds, token }: ReplayTarget,
  spread: SendRun,
  hot: SendRun | undefined,
): Promise<{ rows: ScenarioRow[]; failures: number; cpuUsPerRequest: Record<string, number> }> {
  const replayLoad = async (title: string, plan: SendPlan, first: number, count: number) => {
    const before = await replaysBySource(server.url, token);
    const cpuBefore = await server.cpuMs();
    const result = await load({
      title,
      url: server.url,
      connections,
      durationSeconds: seconds,
      ...sendRequests({ ...plan, replay: { first, count } }),
    });
    const cpuUs = cpuUsPerRequest((await server.cpuMs()) - cpuBefore, result);
    return { result, cpuUs, sources: sourceShare(before, await replaysBySource(server.url, token)) };
  };
  const stored = Math.max(1, spread.result.requests - connections);
  const runs = [
    { scenario: "4 idempotent replay", ...(await replayLoad("idempotent replay", spread.plan, 1, stored)) },
  ];
  if (hot) {
    const newest = Math.max(1, Math.min(RECENT_KEYS, hot.result.requests - connections));
    const first = Math.max(1, hot.result.requests - connections - newest + 1);
    runs.push({
      scenario: "4b replay of recent keys",
      ...(await replayLoad("recent replay", hot.plan, first, newest)),
    });
  }
  const writes = spread.result;
  return {
    rows: runs.map(({ scenario, result, sources }) => ({
      scenario,
      server: { rps: result.requestsPerSecond, p50Ms: result.p50Ms, p99Ms: result.p99Ms },
      baseline: { label: "scenario 1 writes", rps: writes.requestsPerSecond, p50Ms: writes.p50Ms, p99Ms: writes.p99Ms },
      ratio: result.requestsPerSecond / writes.requestsPerSecond,
      ratioLabel: `x first writes (${sources})`,
      target: ">= 2",
      met: result.requestsPerSecond >= 2 * writes.requestsPerSecond,
    })),
    failures: runs.reduce((total, { result }) => total + result.errors + result.non2xx, 0),
    cpuUsPerRequest: Object.fromEntries(runs.map(({ scenario, cpuUs }) => [scenario, cpuUs])),
  };
}
