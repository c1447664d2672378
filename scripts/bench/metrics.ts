/** The server's /metrics, read: the Prometheus text format as samples (the bench's figures and test/ops alike). */

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** The text exposition format as samples; comments and blank lines left out. */
export function parseMetrics(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match) throw new Error(`not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const [, key, value] of (match[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[key!] = value!;
    samples.push({ name: match[1]!, labels, value: Number(match[3]) });
  }
  return samples;
}

/** A bench server's /metrics (`token`: its METRICS_TOKEN) as samples; throws when it does not answer 200. */
export async function scrapeMetrics(serverUrl: string, token: string): Promise<Sample[]> {
  const response = await fetch(`${serverUrl}/metrics`, { headers: { Authorization: `Bearer ${token}` } });
  if (!response.ok) throw new Error(`/metrics answered ${response.status}`);
  return parseMetrics(await response.text());
}

/** The sum of every sample named `name`, whatever its labels. */
export const total = (samples: readonly Sample[], name: string) =>
  samples.reduce((sum, sample) => (sample.name === name ? sum + sample.value : sum), 0);
