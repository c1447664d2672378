/**
 * A scenario and its pgbench baseline, run by turns: these machines drift by a third within minutes (pgbench's
 * one-message send measured 2,476 and 3,404 tps an hour apart), so one server run against one pgbench run taken
 * a minute later says as much about the drift as about the server. Each turn runs both back to back; the row
 * compares the medians.
 */
import type { LoadResult } from "./load.js";
import type { PgbenchResult } from "./pgbench.js";

export interface Alternated {
  /** The server run with the median throughput (its p50 and p99 are that run's). */
  server: LoadResult;
  /** The pgbench run with the median throughput. */
  baseline: PgbenchResult;
  /** Every run's throughput, in the order run: the scenario's own first, then one per turn. */
  serverRps: number[];
  baselineTps: number[];
  /** Errors and non-2xx answers in all the server runs. */
  failures: number;
}

/**
 * `turns` more runs of each after the first pair (`server`, `baseline`), alternated: the medians of all of them.
 * With no turns, the first pair as it is.
 */
export async function alternated(
  first: { server: LoadResult; baseline: PgbenchResult },
  turns: number,
  again: { server(): Promise<LoadResult>; baseline(): Promise<PgbenchResult> },
): Promise<Alternated> {
  const servers = [first.server];
  const baselines = [first.baseline];
  for (let turn = 0; turn < turns; turn++) {
    servers.push(await again.server());
    baselines.push(await again.baseline());
  }
  return {
    server: median(servers, (run) => run.requestsPerSecond),
    baseline: median(baselines, (run) => run.tps),
    serverRps: servers.map((run) => run.requestsPerSecond),
    baselineTps: baselines.map((run) => run.tps),
    failures: servers.reduce((sum, run) => sum + run.errors + run.non2xx, 0),
  };
}

/** The middle item by `value` (the upper middle of an even count). */
function median<T>(items: T[], value: (item: T) => number): T {
  return [...items].sort((a, b) => value(a) - value(b))[Math.floor(items.length / 2)]!;
}

/** One line: each side's runs and the ratio of the medians. */
export function describeAlternated({ serverRps, baselineTps, server, baseline }: Alternated): string {
  const list = (values: number[]) => values.map((value) => value.toFixed(0)).join(", ");
  const ratio = server.requestsPerSecond / baseline.tps;
  return `server ${list(serverRps)} req/s; pgbench -c ${baseline.clients} ${list(baselineTps)} tps; medians' ratio ${ratio.toFixed(2)}`;
}
