import { mkdir, writeFile } from "node:fs/promises";

export interface ScenarioRow {
  scenario: string;
  server: { rps: number; p50Ms: number; p99Ms: number };
  baseline: { label: string; rps: number; p50Ms?: number; p99Ms?: number };
  /** server / baseline throughput (or the scenario's own ratio, e.g. growth). */
  ratio: number;
  ratioLabel: string;
  target?: string;
  met?: boolean;
}

const fixed = (value: number, digits = 1) => (Number.isFinite(value) ? value.toFixed(digits) : "-");

/** The table printed at the end of a run. */
export function printTable(rows: ScenarioRow[]): void {
  const header = [
    "scenario",
    "server req/s",
    "p50 ms",
    "p99 ms",
    "baseline",
    "baseline req/s",
    "ratio",
    "target",
    "met",
  ];
  const lines = rows.map((row) => [
    row.scenario,
    fixed(row.server.rps, 0),
    fixed(row.server.p50Ms, 2),
    fixed(row.server.p99Ms, 2),
    row.baseline.label,
    fixed(row.baseline.rps, 0),
    `${fixed(row.ratio, 2)} ${row.ratioLabel}`,
    row.target ?? "",
    row.met === undefined ? "" : row.met ? "yes" : "NO",
  ]);
  const widths = header.map((title, i) => Math.max(title.length, ...lines.map((line) => line[i]!.length)));
  const format = (cells: string[]) => cells.map((cell, i) => cell.padEnd(widths[i]!)).join(" | ");
  console.log(format(header));
  console.log(widths.map((width) => "-".repeat(width)).join("-|-"));
  for (const line of lines) console.log(format(line));
}

/** Writes results.json and a bar chart (throughput and p99 per scenario, server next to baseline). */
export async function writeResults(dir: string, results: object, rows: ScenarioRow[]): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeFile(`${dir}/results.json`, JSON.stringify(results, null, 2));
  await writeFile(`${dir}/results.svg`, chart(rows));
}

function chart(rows: ScenarioRow[]): string {
  const barWidth = 22;
  const group = barWidth * 2 + 30;
  const height = 220;
  const panel = (title: string, x0: number, values: { a: number; b: number }[], unit: string) => {
    const max = Math.max(1, ...values.flatMap((v) => [v.a, v.b]));
    const bars = values
      .map((v, i) => {
        const x = x0 + 40 + i * group;
        const ha = (v.a / max) * height;
        const hb = (v.b / max) * height;
        return [
          `<rect x="${x}" y="${40 + height - ha}" width="${barWidth}" height="${ha}" fill="#3b6ea8"><title>server ${fixed(v.a)} ${unit}</title></rect>`,
          `<rect x="${x + barWidth}" y="${40 + height - hb}" width="${barWidth}" height="${hb}" fill="#b0b0b0"><title>baseline ${fixed(v.b)} ${unit}</title></rect>`,
          `<text x="${x + barWidth}" y="${40 + height + 14}" font-size="9" text-anchor="middle">${i + 1}</text>`,
          `<text x="${x + barWidth / 2}" y="${36 + height - ha}" font-size="8" text-anchor="middle">${fixed(v.a, 0)}</text>`,
        ].join("");
      })
      .join("");
    return `<text x="${x0 + 40}" y="24" font-size="13" font-weight="bold">${title}</text>${bars}`;
  };
  const width = 80 + rows.length * group;
  const throughput = panel(
    "Throughput (req/s): server (blue) vs baseline (grey)",
    0,
    rows.map((r) => ({ a: r.server.rps, b: r.baseline.rps })),
    "req/s",
  );
  const latency = panel(
    "p99 latency (ms)",
    width,
    rows.map((r) => ({ a: r.server.p99Ms, b: r.baseline.p99Ms ?? 0 })),
    "ms",
  );
  const legend = rows
    .map(
      (row, i) =>
        `<text x="40" y="${300 + i * 14}" font-size="11">${i + 1}. ${escape(row.scenario)} — ratio ${fixed(row.ratio, 2)} ${escape(row.ratioLabel)}</text>`,
    )
    .join("");
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width * 2}" height="${310 + rows.length * 14}" font-family="sans-serif">${throughput}${latency}${legend}</svg>\n`;
}

function escape(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}
