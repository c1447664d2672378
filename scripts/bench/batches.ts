import { fixed } from "./chart.js";
import { parseMetrics, scrapeMetrics, type Sample } from "./metrics.js";
import type { BenchServer } from "./server.js";

/** The histogram the send coalescer exposes on /metrics: items stored per batch statement. */
const METRIC = "send_batch_items";

/** One scrape of the histogram, summed over its label sets; undefined when the server does not expose it. */
interface BatchHistogram {
  /** Cumulative counts by bucket upper bound (`le`, +Inf included). */
  buckets: Map<number, number>;
  sum: number;
  count: number;
}

/** What the coalescer did during one load run. */
export interface BatchFigures {
  batches: number;
  meanItems: number;
  /** The upper bound of the bucket holding the 99th percentile batch (Infinity, null in JSON: past the last bound). */
  p99Items: number;
  /** Batch statements committed per second of the run. */
  commitsPerSecond: number;
}

/**
 * Runs `load` (which lasts `seconds`) and reports the batches the server stored meanwhile, from its
 * /metrics before and after (`token`: its METRICS_TOKEN), null when it reported none, and the CPU
 * time the server used.
 */
export async function batchesDuring<T>(
  server: BenchServer,
  token: string,
  seconds: number,
  load: () => Promise<T>,
): Promise<{ result: T; batches: BatchFigures | null; cpuMs: number }> {
  const before = await scrapeBatches(server.url, token);
  const cpuBefore = await server.cpuMs();
  const result = await load();
  const cpuMs = (await server.cpuMs()) - cpuBefore;
  return { result, batches: batchFigures(before, await scrapeBatches(server.url, token), seconds), cpuMs };
}

/** Reads the histogram from the server's /metrics (`token`: its METRICS_TOKEN). */
async function scrapeBatches(serverUrl: string, token: string): Promise<BatchHistogram | undefined> {
  try {
    return batchHistogram(await scrapeMetrics(serverUrl, token));
  } catch (error) {
    // A bench run is not worth losing over its batch figures: say why they are missing and go on.
    console.error(`[bench] ${(error as Error).message}: no batch figures`);
    return undefined;
  }
}

/** The histogram's series in the Prometheus text format, or undefined when none is there. */
export const parseBatchHistogram = (text: string): BatchHistogram | undefined => batchHistogram(parseMetrics(text));

function batchHistogram(samples: readonly Sample[]): BatchHistogram | undefined {
  const histogram: BatchHistogram = { buckets: new Map(), sum: 0, count: 0 };
  let seen = false;
  for (const { name, labels, value } of samples) {
    if (name === `${METRIC}_sum`) histogram.sum += value;
    else if (name === `${METRIC}_count`) histogram.count += value;
    else if (name === `${METRIC}_bucket`) {
      const le = Number(labels.le?.replace("+Inf", "Infinity"));
      histogram.buckets.set(le, (histogram.buckets.get(le) ?? 0) + value);
    } else continue;
    seen = true;
  }
  return seen ? histogram : undefined;
}

/** The batches between two scrapes `seconds` apart; null (kept in results.json) when there were none or no histogram. */
export function batchFigures(
  before: BatchHistogram | undefined,
  after: BatchHistogram | undefined,
  seconds: number,
): BatchFigures | null {
  if (!after) return null;
  const batches = after.count - (before?.count ?? 0);
  if (batches <= 0) return null;
  const bounds = [...after.buckets.keys()].sort((a, b) => a - b);
  const p99Bound = bounds.find((le) => after.buckets.get(le)! - (before?.buckets.get(le) ?? 0) >= 0.99 * batches);
  return {
    batches,
    meanItems: (after.sum - (before?.sum ?? 0)) / batches,
    p99Items: p99Bound ?? Infinity,
    commitsPerSecond: batches / seconds,
  };
}

/** One line for the log and the table's footer. */
export function describeBatches(figures: BatchFigures | null): string {
  if (!figures) return "no batches reported";
  const p99 = Number.isFinite(figures.p99Items) ? `<= ${figures.p99Items}` : "> the largest bucket";
  return `${figures.batches} batches, mean ${fixed(figures.meanItems, 1)} items, p99 ${p99} items, ${fixed(figures.commitsPerSecond, 0)} commits/s`;
}
