import type { Hono } from "hono";
import { parseMetrics, type Sample } from "../../scripts/bench/metrics.js";

export type { Sample };

/** Scrapes `/metrics` (no token) and parses the text exposition format into samples. */
export async function scrape(app: Hono): Promise<{ contentType: string | null; text: string; samples: Sample[] }> {
  const response = await app.request("/metrics");
  if (response.status !== 200) throw new Error(`/metrics answered ${response.status}`);
  const text = await response.text();
  return { contentType: response.headers.get("Content-Type"), text, samples: parseMetrics(text) };
}

/** The value of the one sample with this name whose labels include `labels`; undefined when there is none. */
export function valueOf(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  const found = samples.filter(
    (sample) => sample.name === name && Object.entries(labels).every(([key, value]) => sample.labels[key] === value),
  );
  if (found.length > 1) throw new Error(`${found.length} samples of ${name} match ${JSON.stringify(labels)}`);
  return found[0]?.value;
}
